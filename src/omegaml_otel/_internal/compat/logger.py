"""``om.logger``: omega-ml's simple logger and its log dataset, on OpenTelemetry log records.

Every record of the log dataset is an ordinary OTel log record in ``otel_logs`` that carries
``omegaml.log.dataset='.omega/logs'``; simple-logger records also carry their own level number
(``omegaml.levelno``). ``reset()`` does not delete anything: it writes a new ``log init`` record, and the dataset
shows what came after the latest one. ``dataset.get()`` turns the rows back into omega-ml's documented layout.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from omegaml_otel._internal.capture.context import flush_outside_task, last_sent, record_attributes, task_level
from omegaml_otel._internal.capture.logbridge import LogBridge
from omegaml_otel._internal.compat.levels import SIMPLE_LEVELS, SIMPLE_SEVERITY, python_level, simple_level
from omegaml_otel._internal.export.pipeline import emitter_for, flush_for_read, pipeline
from omegaml_otel._internal.stores import Cond, MapKey, Store, StoreError, default_store, schema
from omegaml_otel._internal.stores.base import OPS
from omegaml_otel.conventions import (
    DATASET,
    LEVELNO,
    LOG_DATASET,
    LOG_RESET,
    SYSTEM_LOGGER,
    TASK_END_SCOPE,
    TASK_ID,
)
from omegaml_otel.settings import settings

if TYPE_CHECKING:  # readers only: the simple logger writes without pandas, so workers never load it (lean workers)
    import pandas as pd

_LA = "LogAttributes"
#: LogDataset._window_start: its first search for the latest reset covers the last hour, each further one a range 8
#: times as long before the previous; a later call searches again from an hour before the previous one, so a reset
#: that a collector delivers up to an hour late still counts
_RESET_SEARCH_NS = 3600 * 10**9
_RESET_SEARCH_GROWTH = 8
_RESET_LATE_NS = 3600 * 10**9
_UNKNOWN = object()


def dataset_attributes(dataset: str = LOG_DATASET) -> dict[str, str]:
    return {DATASET: dataset}


@lru_cache(maxsize=1)
def default_logger() -> SimpleLogger:
    """``om.logger``: the process's simple logger."""
    return SimpleLogger()


class SimpleLogger:
    """omega-ml's ``OmegaSimpleLogger``: levels QUIET 0 … INFO 4, DEBUG 5; one record per call."""

    levels = SIMPLE_LEVELS

    def __init__(self, name: str = "simple", level: str | None = None, dataset: str = LOG_DATASET):
        self._name = name
        self._dataset_name = dataset
        self._level = simple_level(level or settings().loglevel)
        self._dataset: LogDataset | None = None

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def level(self) -> str:
        return task_level.get() or self._level

    def setLevel(self, level: str) -> None:
        self._level = simple_level(level)

    def getLogger(self, name: str, **kwargs) -> SimpleLogger:
        return SimpleLogger(name, dataset=self._dataset_name, **kwargs)

    def log(self, level: str, message) -> None:
        level = simple_level(level)
        if level != "QUIET" and SIMPLE_LEVELS.index(level) > SIMPLE_LEVELS.index(self.level):
            return
        if self.level == "QUIET" and level != "QUIET":
            return
        self.dataset.ensure()
        _emit(self._name, level, SIMPLE_LEVELS.index(level), message, self._dataset_name)

    def info(self, message) -> None:
        self.log("INFO", message)

    def debug(self, message) -> None:
        self.log("DEBUG", message)

    def warning(self, message) -> None:
        self.log("WARNING", message)

    def error(self, message) -> None:
        self.log("ERROR", message)

    def critical(self, message) -> None:
        self.log("CRITICAL", message)

    def reset(self) -> None:
        """Start the dataset afresh: earlier records stay in the store but no longer show in ``dataset.get()``."""
        self.dataset._reset_ns = _emit(SYSTEM_LOGGER, "SYSTEM", 999, "log init", self._dataset_name, reset=True)
        self.dataset._initialized = True

    @property
    def dataset(self) -> LogDataset:
        if self._dataset is None:
            self._dataset = LogDataset(self._dataset_name)
        return self._dataset

    @contextmanager
    def capture(self, logger: logging.Logger | str | None = None, level: str | int | None = None):
        """Store the records of a Python logger (default: the root logger) in the log dataset while inside."""
        pylogger = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
        handler = LogBridge(level or logging.NOTSET, logger_provider=pipeline().logger_provider,
                            attributes=dataset_attributes(self._dataset_name), claim=True)
        self.dataset.ensure()
        pylogger.addHandler(handler)
        try:
            yield handler
        finally:
            pylogger.removeHandler(handler)
            flush_outside_task()

    def show(self, latest: int = 20, columns: list[str] | None = None, reverse: bool = False,
             **filters) -> pd.DataFrame:
        df = self.dataset.get(**filters).tail(latest)
        df = df[columns or ["level", "msg", "hostname", "created"]]
        return df.iloc[::-1] if reverse else df


def _emit(name: str, level: str, levelno: int, message, dataset: str, reset: bool = False) -> int:
    """Emit one dataset record; returns its timestamp (ns)."""
    attrs = {**record_attributes.get(), DATASET: dataset, LEVELNO: levelno}
    if reset:
        attrs[LOG_RESET] = True
    now = time.time_ns()
    emitter_for().emit(name, timestamp=now, severity_number=SIMPLE_SEVERITY[level],
                       severity_text=level, body=_text(message), attributes=attrs)
    flush_outside_task()
    return now


def _text(message) -> str:
    """``str(message)``, or a placeholder that says why when that raises: logging must never break the caller, and
    a record that the call happened is worth more than none."""
    try:
        return str(message)
    except Exception as exc:
        try:
            why = f"{type(exc).__name__}: {exc}"
        except Exception:  # the exception cannot be shown either
            why = type(exc).__name__
        return f"<unprintable {type(message).__name__} object: str() raised {why}>"


class LogDataset:
    """The rows of one log dataset in omega-ml's layout."""

    def __init__(self, name: str = LOG_DATASET, store: Store | None = None):
        self.name = name
        self._store = store
        self._initialized = False
        self._reported = False
        self._retry_at = 0.0
        #: time of this process's latest reset(); waiting readers also wait for it to reach a collector-fed store
        self._reset_ns: int | None = None
        #: (store, the latest reset found in it, ns from which the next search must look again): see _window_start
        self._known_start: tuple | None = None

    @property
    def store(self) -> Store:
        return self._store or default_store()

    def ensure(self) -> None:
        """Write the ``SYSTEM 999 system 'log init'`` record when the dataset has none yet (embedded store)."""
        if self._initialized or not settings().uses_store("logs") or time.monotonic() < self._retry_at:
            return
        try:
            flush_for_read()
            found = self.store.exists(schema.LOGS, conds=[Cond("ScopeName", "eq", SYSTEM_LOGGER),
                                                          Cond(_LA, "eq", self.name, key=DATASET)])
        except StoreError as exc:
            # logging must not break a task or a notebook; reading the dataset will raise this error instead. A
            # failing store is tried again after the export buffer's back-off, not on every log call
            self._retry_at = time.monotonic() + settings().retry_interval
            if not self._reported:
                self._reported = True
                sys.__stderr__.write(f"omegaml-otel: {exc}\n")
            return
        if not found:
            _emit(SYSTEM_LOGGER, "SYSTEM", 999, "log init", self.name)
        self._initialized = True

    def _query(self, **kw) -> pd.DataFrame:
        """Every read of the dataset: this process's own records first become readable."""
        flush_for_read()
        return self.store.logs(**kw)

    def _window_start(self) -> datetime | None:
        """The time of the dataset's latest reset record (None: never reset), found without reading the whole
        table, which on ClickHouse an unbounded search for the latest record does. The first call searches back
        from now over ever longer time ranges; a later one searches only what can have arrived since the previous
        call (late deliveries included) and checks that the reset found then is still stored."""
        flush_for_read()
        store, now = self.store, time.time_ns()
        start = _UNKNOWN
        if self._known_start is not None and self._known_start[0] is store:
            _, known, searched_from = self._known_start
            start = self._latest_reset(store, since=searched_from)
            if start is None and known is not None:  # unless its rows were deleted since (retention, a test)
                start = known if self._latest_reset(store, since=known, until=known) is not None else _UNKNOWN
        if start is _UNKNOWN:
            start, upper, span = None, None, _RESET_SEARCH_NS
            while start is None:
                lower = now - span if span < now else None
                start = self._latest_reset(store, since=lower, until=upper)
                if lower is None:
                    break
                upper, span = lower, span * _RESET_SEARCH_GROWTH
        self._known_start = (store, start, now - _RESET_LATE_NS)
        return start

    def _latest_reset(self, store: Store, since=None, until=None) -> datetime | None:
        last = store.logs(conds=[Cond("ScopeName", "eq", SYSTEM_LOGGER),  # indexed: cheap on big stores
                                 Cond(_LA, "eq", self.name, key=DATASET), Cond(_LA, "eq", "true", key=LOG_RESET)],
                          columns=["Timestamp"], since=since, until=until, limit=1, descending=True)
        return last["Timestamp"].iloc[0] if len(last) else None

    def get(self, filter: dict | None = None, *, since=None, end=None, extra: bool | list[str] = False,
            wait=False, timeout: float = 30, **kwargs) -> pd.DataFrame:
        """Records as a DataFrame with columns ``level, levelno, logger, msg, text, hostname, created``.

        Filters: ``field=value`` or ``field__op=value`` (ops: eq, ne, lt, lte, gt, gte, in, contains, startswith)
        on those columns and on ``userid, taskid, trace_id, span_id, service``, given as keywords or as
        ``filter=dict(...)``; ``since``/``end`` bound ``created`` (datetime, timedelta, ISO string or '5h').
        ``extra=True`` (or a list of names) adds the extra columns. ``wait=`` a task id, an AsyncResult or True (the
        last task ``om.runtime`` sent) first waits up to ``timeout`` seconds until that task's records are in the
        store, for stores fed through a collector, which deliver with a delay (the embedded store needs no wait).
        """
        # readers only: the layout and the time bounds need pandas, which workers never load (lean workers)
        from omegaml_otel._internal.compat.logframe import FIELDS, SELECT, to_compat
        from omegaml_otel._internal.compat.timeparse import parse_time

        if wait is not False and wait is not None:
            self.wait_for_task(wait, timeout)
        filters = {**(filter or {}), **kwargs}
        extras = _extra_columns(extra)
        pushed, post = _parse_filters(filters)
        start = self._window_start()
        lower = parse_time(since, name="since") if since is not None else None
        if start is not None:
            lower = max(lower, start) if lower is not None else start
        upper = parse_time(end, name="end", future=True) if end is not None else None
        select = SELECT + [FIELDS[c] for c in extras if FIELDS[c] not in SELECT]
        raw = self._query(conds=[Cond(_LA, "eq", self.name, key=DATASET), *pushed], columns=select,
                          since=lower, until=upper, python_strings=True)
        df = to_compat(raw, extras)
        for field, op, value in post:
            df = df[_match(df[field], op, value)]
        return df.reset_index(drop=True)

    def wait_for_task(self, task, timeout: float = 30) -> None:
        """Block until the records of ``task`` (id, AsyncResult, or True: the runtime's last task) are stored."""
        if task is True:
            task = last_sent()
            if task is None:
                raise ValueError("wait=True waits for the last task om.runtime sent, but none was sent yet; "
                                 "pass wait=<task id or AsyncResult>")
        task_id = getattr(task, "id", task)
        if settings().store_only("logs"):
            return  # embedded: a task's records are stored before its result is published
        pipeline().logger_provider.force_flush()  # this process's own records (a reset, say) go out now
        waits = [[Cond("ScopeName", "eq", TASK_END_SCOPE), Cond(_LA, "eq", str(task_id), key=TASK_ID)]]
        if self._reset_ns is not None:
            waits.append([Cond("ScopeName", "eq", SYSTEM_LOGGER), Cond("Timestamp", "eq", self._reset_ns),
                          Cond(_LA, "eq", self.name, key=DATASET)])
        deadline = time.monotonic() + timeout
        while not all(len(self._query(conds=conds, columns=["Timestamp"], limit=1)) for conds in waits):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the records of task {task_id} did not reach store {self.store.url} within {timeout}s; the "
                    "collector path delivers in batches (OTEL_BLRP_SCHEDULE_DELAY on the worker, the collector's "
                    "batch timeout): pass a longer timeout=, or check that the worker exports to the collector")
            time.sleep(0.1)

    def follow(self, interval: float = 0.5, **filters) -> Iterator[pd.DataFrame]:
        """Yield new records as they arrive (what ``omtel logs -f`` prints)."""
        since = None
        while True:  # after the first poll, each reads only what is newer than what it printed (key-pruned)
            df = self.get(**{**filters, "since": since}) if since is not None else self.get(**filters)
            if since is not None:
                df = df[df["created"] > since]
            if len(df):
                since = df["created"].max()
                yield df
            time.sleep(interval)


def _extra_columns(extra) -> list[str]:
    from omegaml_otel._internal.compat.logframe import EXTRA_COLUMNS  # readers only: see LogDataset.get

    if extra is True:
        return list(EXTRA_COLUMNS)
    if not extra:
        return []
    unknown = [c for c in extra if c not in EXTRA_COLUMNS]
    if unknown:
        raise ValueError(f"unknown extra column {unknown[0]!r}; extra columns are {', '.join(EXTRA_COLUMNS)}")
    return list(extra)


def _parse_filters(filters: dict) -> tuple[list[Cond], list[tuple[str, str, object]]]:
    # readers only: see LogDataset.get
    from omegaml_otel._internal.compat.logframe import FIELDS
    from omegaml_otel._internal.compat.timeparse import parse_time

    pushed, post = [], []
    for name, value in filters.items():
        field, _, op = name.partition("__")
        op = op or "eq"
        if field not in FIELDS:
            raise ValueError(f"unknown log field {field!r} in filter {name!r}; fields are "
                             f"{', '.join(FIELDS)}")
        if op not in OPS:
            raise ValueError(f"unknown operator {op!r} in filter {name!r}; use field__op with op one of "
                             f"{', '.join(OPS)}")
        if op == "in" and (isinstance(value, str) or not hasattr(value, "__iter__")):
            raise ValueError(f"filter {name!r} needs a list of values, not {value!r}")
        if field == "level":
            value = [str(v).upper() for v in value] if op == "in" else str(value).upper()
        if field == "created":
            value = [parse_time(v, name=name) for v in value] if op == "in" else parse_time(value, name=name)
        target = FIELDS[field]
        if target is None:
            post.append((field, op, value))
        elif isinstance(target, MapKey):
            pushed.append(Cond(target.column, op, value, key=target.key))
        else:
            pushed.append(Cond(target, op, value))
    return pushed, post


def _match(series: pd.Series, op: str, value) -> pd.Series:
    if op == "in":
        return series.isin(list(value))
    if op == "contains":
        return series.astype(str).str.contains(str(value), regex=False)
    if op == "startswith":
        return series.astype(str).str.startswith(str(value))
    return {"eq": series.__eq__, "ne": series.__ne__, "lt": series.__lt__, "lte": series.__le__,
            "gt": series.__gt__, "gte": series.__ge__}[op](value)


#: omega-ml's name of the simple logger's class (``from omegaml.store.logging import OmegaSimpleLogger``)
OmegaSimpleLogger = SimpleLogger


class OmegaLoggingHandler(LogBridge):
    """omega-ml's Python logging handler into the log dataset. ``om.logger.capture(logger)`` is the same for the
    length of a ``with`` block; ``setup()`` attaches it for good, as omega-ml's does."""

    @classmethod
    def setup(cls, dataset: str | None = None, level: str | int | None = None, logger: logging.Logger | None = None,
              name: str | None = None, reset: bool = False, exit_hook: bool = False) -> OmegaLoggingHandler:
        """Attach a handler to ``logger`` (default: the Python logger ``name``, default 'omegaml') and set both to
        ``level`` (default: the logger's effective level). ``reset=True`` starts the dataset afresh
        (``om.logger.reset()``); ``exit_hook=True`` also logs uncaught exceptions to it, then hands them on to the
        previous ``sys.excepthook``. omega-ml's ``store``, ``fmt``, ``size`` and ``defaults`` were its Mongo
        collection's: records here go to the configured store, in omega-ml's text format."""
        logger = logger or logging.getLogger(name or "omegaml")
        level = python_level(level if level is not None else logger.getEffectiveLevel())
        simple = SimpleLogger(dataset=dataset or LOG_DATASET)
        if reset:
            simple.reset()
        else:
            simple.dataset.ensure()
        logger.setLevel(level)
        handler = cls(level, logger_provider=pipeline().logger_provider,
                      attributes=dataset_attributes(simple.dataset.name), claim=True)
        logger.addHandler(handler)
        if exit_hook:
            _log_uncaught(logger)
        return handler


def _log_uncaught(logger: logging.Logger) -> None:
    """Log uncaught exceptions to ``logger`` and hand them on: omega-ml replaced ``sys.excepthook`` without chaining,
    which silenced the interpreter's own report."""
    previous = sys.excepthook

    def excepthook(etype, value, tb):
        logger.error("uncaught %s: %s", etype.__name__, value, exc_info=(etype, value, tb))
        previous(etype, value, tb)

    sys.excepthook = excepthook

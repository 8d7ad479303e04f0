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
from contextvars import ContextVar
from datetime import datetime

import numpy as np
import pandas as pd

from omegaml_otel.capture.context import record_attributes
from omegaml_otel.capture.logbridge import LogBridge
from omegaml_otel.compat.levels import PYTHON_LEVELS, SIMPLE_LEVELS, SIMPLE_SEVERITY, simple_level
from omegaml_otel.compat.timeparse import parse_time
from omegaml_otel.export.emitter import emitter_for
from omegaml_otel.export.providers import telemetry
from omegaml_otel.settings import settings
from omegaml_otel.stores import Cond, MapKey, Store, StoreError, default_store

LOG_DATASET = ".omega/logs"
DATASET_ATTR = "omegaml.log.dataset"
LEVELNO_ATTR = "omegaml.levelno"
RESET_ATTR = "omegaml.log.reset"
SYSTEM_LOGGER = "system"

#: simple-logger level in force inside a task run with a logging mode (omega-ml sets it per request)
task_level: ContextVar[str | None] = ContextVar("omtel_task_level", default=None)

COLUMNS = ["level", "levelno", "logger", "msg", "text", "hostname", "created"]
_RA, _LA = "ResourceAttributes", "LogAttributes"
#: compat field -> where it lives in otel_logs (None: derived after reading)
_FIELDS: dict[str, str | MapKey | None] = {
    "level": "SeverityText", "levelno": None, "logger": "ScopeName", "msg": "Body", "text": None,
    "hostname": MapKey(_RA, "host.name"), "created": "Timestamp",
    "userid": MapKey(_RA, "omegaml.user"), "taskid": MapKey(_LA, "celery.task_id"),
    "trace_id": "TraceId", "span_id": "SpanId", "service": "ServiceName",
}
EXTRA_COLUMNS = ["userid", "taskid", "trace_id", "span_id", "service"]
_OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "startswith")


def dataset_attributes(dataset: str = LOG_DATASET) -> dict[str, str]:
    return {DATASET_ATTR: dataset}


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
        handler = LogBridge(level or logging.NOTSET, logger_provider=telemetry().logger_provider,
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
    attrs = {**record_attributes.get(), DATASET_ATTR: dataset, LEVELNO_ATTR: levelno}
    if reset:
        attrs[RESET_ATTR] = True
    now = time.time_ns()
    emitter_for().emit(name, timestamp=now, severity_number=SIMPLE_SEVERITY[level],
                       severity_text=level, body=str(message), attributes=attrs)
    flush_outside_task()
    return now


def flush_outside_task() -> None:
    """Outside a task, make a record readable by other processes at once, as omega-ml's direct insert did."""
    if "celery.task_id" not in record_attributes.get():
        telemetry().flush_logs()


class LogDataset:
    """The rows of one log dataset in omega-ml's layout."""

    def __init__(self, name: str = LOG_DATASET, store: Store | None = None):
        self.name = name
        self._store = store
        self._initialized = False
        self._reported = False
        #: time of this process's latest reset(); waiting readers also wait for it to reach a collector-fed store
        self._reset_ns: int | None = None

    @property
    def store(self) -> Store:
        return self._store or default_store()

    def ensure(self) -> None:
        """Write the ``SYSTEM 999 system 'log init'`` record when the dataset has none yet (embedded store)."""
        if self._initialized or not settings().uses_store("logs"):
            return
        try:
            telemetry().flush_logs()
            found = self.store.logs(conds=[Cond("ScopeName", "eq", SYSTEM_LOGGER),
                                           Cond(_LA, "eq", self.name, key=DATASET_ATTR)], columns=["Timestamp"],
                                    limit=1)
        except StoreError as exc:
            # logging must not break a task or a notebook; reading the dataset will raise this error instead
            if not self._reported:
                self._reported = True
                sys.__stderr__.write(f"omegaml-otel: {exc}\n")
            return
        if not len(found):
            _emit(SYSTEM_LOGGER, "SYSTEM", 999, "log init", self.name)
        self._initialized = True

    def _window_start(self) -> datetime | None:
        last = self.store.logs(conds=[Cond("ScopeName", "eq", SYSTEM_LOGGER),  # indexed: cheap on big stores
                                      Cond(_LA, "eq", self.name, key=DATASET_ATTR),
                                      Cond(_LA, "eq", "true", key=RESET_ATTR)],
                               columns=["Timestamp"], limit=1, descending=True)
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
        telemetry().flush_logs()
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
        select = ["Timestamp", "SeverityText", "SeverityNumber", "ScopeName", "Body",
                  MapKey(_RA, "host.name"), MapKey(_LA, LEVELNO_ATTR)]
        select += [_FIELDS[c] for c in extras if _FIELDS[c] not in select]
        raw = self.store.logs(conds=[Cond(_LA, "eq", self.name, key=DATASET_ATTR), *pushed], columns=select,
                              since=lower, until=upper, python_strings=True)
        df = to_compat(raw, extras)
        for field, op, value in post:
            df = df[_match(df[field], op, value)]
        return df.reset_index(drop=True)

    def wait_for_task(self, task, timeout: float = 30) -> None:
        """Block until the records of ``task`` (id, AsyncResult, or True: the runtime's last task) are stored."""
        from omegaml_otel.capture.celery import TASK_END_SCOPE
        from omegaml_otel.settings import STORE_EXPORTER

        if task is True:
            import omegaml_otel

            task = omegaml_otel.runtime.last_task_id
            if task is None:
                raise ValueError("wait=True waits for the last task om.runtime sent, but none was sent yet; "
                                 "pass wait=<task id or AsyncResult>")
        task_id = getattr(task, "id", task)
        if settings().exporters["logs"] == (STORE_EXPORTER,):
            return  # embedded: a task's records are stored before its result is published
        telemetry().logger_provider.force_flush()  # this process's own records (a reset, say) go out now
        waits = [[Cond("ScopeName", "eq", TASK_END_SCOPE), Cond(_LA, "eq", str(task_id), key="celery.task_id")]]
        if self._reset_ns is not None:
            waits.append([Cond("ScopeName", "eq", SYSTEM_LOGGER), Cond("Timestamp", "eq", self._reset_ns),
                          Cond(_LA, "eq", self.name, key=DATASET_ATTR)])
        deadline = time.monotonic() + timeout
        while not all(len(self.store.logs(conds=conds, columns=["Timestamp"], limit=1)) for conds in waits):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the records of task {task_id} did not reach store {self.store.url} within {timeout}s; the "
                    "collector path delivers in batches (OTEL_BLRP_SCHEDULE_DELAY on the worker, the collector's "
                    "batch timeout): pass a longer timeout=, or check that the worker exports to the collector")
            time.sleep(0.1)

    def follow(self, interval: float = 0.5, **filters) -> Iterator[pd.DataFrame]:
        """Yield new records as they arrive (what ``omtel logs -f`` prints)."""
        since = None
        while True:
            df = self.get(since=since, **filters) if since is not None else self.get(**filters)
            if since is not None:
                df = df[df["created"] > since]
            if len(df):
                since = df["created"].max()
                yield df
            time.sleep(interval)


def _extra_columns(extra) -> list[str]:
    if extra is True:
        return list(EXTRA_COLUMNS)
    if not extra:
        return []
    unknown = [c for c in extra if c not in EXTRA_COLUMNS]
    if unknown:
        raise ValueError(f"unknown extra column {unknown[0]!r}; extra columns are {', '.join(EXTRA_COLUMNS)}")
    return list(extra)


def _parse_filters(filters: dict) -> tuple[list[Cond], list[tuple[str, str, object]]]:
    pushed, post = [], []
    for name, value in filters.items():
        field, _, op = name.partition("__")
        op = op or "eq"
        if field not in _FIELDS:
            raise ValueError(f"unknown log field {field!r} in filter {name!r}; fields are "
                             f"{', '.join(_FIELDS)}")
        if op not in _OPS:
            raise ValueError(f"unknown operator {op!r} in filter {name!r}; use field__op with op one of "
                             f"{', '.join(_OPS)}")
        if op == "in" and (isinstance(value, str) or not hasattr(value, "__iter__")):
            raise ValueError(f"filter {name!r} needs a list of values, not {value!r}")
        if field == "level":
            value = [str(v).upper() for v in value] if op == "in" else str(value).upper()
        if field == "created":
            value = [parse_time(v, name=name) for v in value] if op == "in" else parse_time(value, name=name)
        target = _FIELDS[field]
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


def to_compat(raw: pd.DataFrame, extras: list[str] = ()) -> pd.DataFrame:
    """otel_logs rows -> omega-ml's log layout (vectorised; this runs over millions of rows)."""
    created = raw["Timestamp"]
    level = raw["SeverityText"].astype(object)
    logger = raw["ScopeName"].astype(object)
    msg = raw["Body"].astype(object)
    simple_no = pd.to_numeric(raw[f"{_LA}['{LEVELNO_ATTR}']"], errors="coerce")
    is_simple = simple_no.notna().to_numpy()
    python_no = level.map(PYTHON_LEVELS)
    if python_no.isna().any():
        python_no = python_no.fillna(raw["SeverityNumber"].map(_SEVERITY_TO_PYTHON)).fillna(0)
    levelno = np.where(is_simple, simple_no.fillna(0), python_no).astype("int64")
    ns = created.to_numpy().view("int64")
    text = np.empty(len(raw), dtype=object)
    py = ~is_simple
    if py.any():
        text[py] = _python_text(ns[py], logger.to_numpy()[py], level.to_numpy()[py], msg.to_numpy()[py])
    if is_simple.any():
        text[is_simple] = [f"{t} {lv} {m}" for t, lv, m in zip(
            _iso(ns[is_simple]), level.to_numpy()[is_simple], msg.to_numpy()[is_simple])]
        init = levelno == 999
        text[init] = msg.to_numpy()[init]
    # text as Python strings like the other columns (an ndarray would be inferred as pandas' string dtype)
    df = pd.DataFrame({"level": level, "levelno": levelno, "logger": logger, "msg": msg,
                       "text": pd.Series(text, index=raw.index, dtype=object),
                       "hostname": raw[f"{_RA}['host.name']"].astype(object), "created": created})
    df = _drop_repeated_init(df)
    for c in extras:
        target = _FIELDS[c]
        df[c] = raw.loc[df.index, target.label if isinstance(target, MapKey) else target].fillna("")
    return df


def _drop_repeated_init(df: pd.DataFrame) -> pd.DataFrame:
    # processes that started the dataset at the same moment each wrote a 'log init'; show the first only
    init = (df["levelno"] == 999) & (df["logger"] == SYSTEM_LOGGER)
    if init.sum() > 1:
        first = init.idxmax()
        df = df[~init | (df.index == first)]
    return df


_SEVERITY_TO_PYTHON = {1: 10, 5: 10, 9: 20, 13: 30, 17: 40, 21: 50}


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique keys, index of each row's key): O(n) for the time-ordered rows the store returns."""
    if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
        return np.unique(keys, return_inverse=True)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=np.int64)
    inverse = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(keys)]))
    return keys[starts], inverse


def _seconds(ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """'YYYY-MM-DD HH:MM:SS' of each time, formatted once per distinct second, and the sub-second remainder."""
    sec, rem = np.divmod(ns, 10**9)
    uniq, inverse = _groups(sec)
    text = np.strings.replace(np.datetime_as_string(uniq.astype("datetime64[s]"), unit="s"), "T", " ")
    return text.astype(object)[inverse], rem


def _iso(ns: np.ndarray) -> list[str]:
    """``str(datetime)`` of naive UTC times, as omega-ml's simple logger writes ``created``."""
    prefix, rem = _seconds(ns)
    return [f"{p}.{r:06d}" for p, r in zip(prefix, (rem // 1000).tolist())]


def _local_offsets(ns: np.ndarray) -> np.ndarray:
    """The local UTC offset (ns) of each time. Zone and DST changes fall on 15-minute boundaries, so one
    ``time.localtime`` per 15-minute slot in the data gives every row's offset."""
    uniq, inverse = _groups(ns // (900 * 10**9))
    offsets = np.array([time.localtime(int(s) * 900).tm_gmtoff for s in uniq], dtype="int64")
    return offsets[inverse] * 10**9


def _python_text(ns: np.ndarray, logger, level, msg) -> list[str]:
    """omega-ml's ``'%(asctime)s - %(name)s - %(levelname)s - %(message)s'`` with local-time asctime."""
    prefix, rem = _seconds(ns + _local_offsets(ns))
    return [f"{p},{r:03d} - {n} - {lv} - {m}"
            for p, r, n, lv, m in zip(prefix, (rem // 10**6).tolist(), logger, level, msg)]

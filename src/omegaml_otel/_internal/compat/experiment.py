"""``om.runtime.experiment()``: omega-ml's experiment tracking on OpenTelemetry.

A run is a root span (``experiment/<name>``); its trace id is the run's unique id, so concurrent runs never
collide. Run *numbers* are not stored: the reader numbers runs by the order of their ``start`` events (ties broken
by id), which stays correct with many clients and a collector in between. Inside ``with exp:`` the run's span and
baggage (experiment, run id, provider, profiling interval) are the current context, so every Celery task sent
there carries them to its worker, which records ``task_call``/``task_success``/``task_failure`` for the run and,
for the profiling provider, samples the worker while the task runs.

omega-ml code reaches the same object under omega-ml's names: ``om.runtime.experiment()`` returns an
``OmegaSimpleTracker``, ``OmegaProfilingTracker`` or ``NoTrackTracker`` (the class of the provider the experiment was
declared with), which is both omega-ml's tracking proxy and its tracker (``exp.experiment`` is the object itself).
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import date
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from opentelemetry import context

from omegaml_otel._internal.capture.context import flush_outside_task
from omegaml_otel._internal.capture.hardware import system_info
from omegaml_otel._internal.capture.profiling import ProfileSampler, pipeline_sampler
from omegaml_otel._internal.capture.tracking import (
    RunSpan,
    declared_provider,
    emit_event,
    event_conds,
    run_context,
)
from omegaml_otel._internal.compat.artifacts import store_pickled
from omegaml_otel._internal.compat.distinct import numbers, per_distinct
from omegaml_otel._internal.compat.expdata import (
    EXTRA_COLUMNS,
    as_list,
    batches,
    decode_values,
    filter_in,
    profile_rows,
    restore,
)
from omegaml_otel._internal.compat.expstats import ExperimentStatistics
from omegaml_otel._internal.compat.plots import plot_experiment
from omegaml_otel._internal.compat.timeparse import parse_time, utcnow
from omegaml_otel._internal.export.pipeline import flush_for_read
from omegaml_otel._internal.stores import Cond, MapKey, Store, StoreError, default_store
from omegaml_otel.conventions import (
    EVENT,
    EXPERIMENT,
    EXTRA_PREFIX,
    HOST_NAME,
    KEY,
    PROVIDERS,
    RUN,
    STEP,
    TASK_ID,
    USER,
    VALUE,
    Event,
)
from omegaml_otel.settings import settings

_ALIASES = {"default": "simple", None: None}
_LA, _RA = "LogAttributes", "ResourceAttributes"
#: data(**filters): the extra fields omega-ml stored in every record and where they live here; any other name is an
#: extra field of the event (``log_extra``, ``log_metric(..., name=value)``)
_FILTER_KEYS = {"taskid": (_LA, TASK_ID), "run_id": (_LA, RUN), "userid": (_RA, USER), "node": (_RA, HOST_NAME)}
#: omega-ml's record fields that ``log_extra()`` (or a ``log_*(..., taskid=...)``) sets per event, and the record
#: attribute each becomes: the task id every task's record carries, and the user, which otherwise is the process's
#: (a resource attribute), so that ``data(taskid=..., userid=...)`` finds them as omega-ml does
_EVENT_FIELDS = {"taskid": TASK_ID, "userid": USER}


def _provider_name(provider: str | None) -> str | None:
    name = _ALIASES.get(provider, provider)
    if name is not None and name not in PROVIDERS:
        raise ValueError(f"unknown tracking provider {provider!r}; use one of {', '.join(PROVIDERS)} "
                         "('default' = 'simple')")
    return name


def _is_all(value) -> bool:
    """omega-ml's "no filter" values: None, 'all' and '*'."""
    return value is None or (isinstance(value, str) and value.lower() in ("all", "*"))


class Experiment:
    """One experiment; ``with`` blocks and ``start()``/``stop()`` make runs. Logging needs an active run.

    ``provider`` is what a new experiment is declared with; an existing one keeps its declared provider
    (``declared=True``: ``provider`` is that already). ``autotrack`` is kept for omega-ml code that sets it; it
    records nothing here, since model tracking is omega-ml's model store.
    """

    def __init__(self, name: str, provider: str | None = None, implied_run: bool = True,
                 store: Store | None = None, interval: float | None = None, autotrack: bool = False,
                 *, declared: bool = False):
        self.name = name
        self._store = store
        self._implied_run = implied_run
        self.provider = provider if declared else declared_provider(name, _provider_name(provider), store)
        self.autotrack = autotrack
        self._run_id: str | None = None
        self._span: RunSpan | None = None
        self._token = None
        self._started_here = False
        self._extra: dict[str, Any] = {}
        self._since_dtnow = None
        self._profiler: ProfileSampler | None = None
        self._interval = float(interval) if interval is not None else settings().profile_interval

    @property
    def store(self) -> Store:
        return self._store or default_store()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    @property
    def experiment(self) -> Experiment:
        """The tracker behind omega-ml's proxy (``om.runtime.experiment(name).experiment``): this object."""
        return self

    @property
    def _experiment(self) -> str:
        """omega-ml's attribute for the experiment's name."""
        return self.name

    def _query(self, metrics: bool = False, **kw) -> pd.DataFrame:
        """Every read of this experiment (events, or with ``metrics`` profiling samples): this process's own
        records first become readable."""
        flush_for_read()
        return self.store.metrics(**kw) if metrics else self.store.logs(**kw)

    # -- runs --------------------------------------------------------------------------------------------------
    @property
    def tracking(self) -> bool:
        return self.provider != "notrack"

    def runs(self) -> pd.DataFrame:
        """Every run of this experiment since its last ``clear()``: run number, run id, start time, in start order."""
        return self._runs_since_clear()[0]

    def _runs_since_clear(self) -> tuple[pd.DataFrame, pd.Timestamp | None]:
        """The runs (numbered from 1 after the last ``clear()``, as omega-ml numbers them in its re-created
        dataset) and the time of that clear, from one query."""
        marks = [Event.START, Event.CLEAR]
        # start and clear records have no key, so their Body is the event itself: a plain-column filter that stores
        # apply before decoding any attribute JSON (as event_conds does for a single event)
        found = self._query(conds=[*event_conds(self.name, marks), Cond("Body", "in", marks)],
                            columns=["Timestamp", MapKey(_LA, RUN), MapKey(_LA, EVENT)])
        found.columns = ["start", "run_id", "event"]
        clears = found.start[found.event == Event.CLEAR]
        cleared = clears.max() if len(clears) else None
        starts = found[found.event == Event.START]
        if cleared is not None:
            starts = starts[starts.start > cleared]
        starts = starts[["start", "run_id"]].sort_values(["start", "run_id"], kind="stable", ignore_index=True)
        starts.insert(0, "run", range(1, len(starts) + 1))
        return starts, cleared

    @property
    def run(self) -> int | None:
        """The number of this object's current run."""
        if self._run_id is None:
            return None
        runs = self.runs()
        match = runs.run[runs.run_id == self._run_id]
        return int(match.iloc[0]) if len(match) else None

    @property
    def _latest_run(self) -> int | None:
        runs = self.runs()
        return int(runs.run.iloc[-1]) if len(runs) else None

    def start(self, run: int | None = None) -> int | None:
        if not self.tracking:
            return None
        self._span = RunSpan(self.name, self.provider)
        self._run_id = self._span.run_id
        self._log(Event.START, provider=self.provider)
        if self.provider == "profiling":  # the seed's `system` row right after `start`: what the run runs on
            self.log_system()
        return self.run

    def stop(self) -> None:
        if not self.tracking or self._run_id is None:
            return
        self._log(Event.STOP)
        if self._span is not None:
            self._span.end()
            self._span = None

    def status(self, run: int | None = None) -> str:
        if not self.tracking:
            return "STOPPED"
        run_id = self._run_ids([run])[0] if run is not None else (self._run_id or self._latest_run_id())
        if run_id is None:
            return "PENDING"
        seen = set(self._query(conds=event_conds(self.name, [Event.START, Event.STOP], run_id),
                               columns=[MapKey(_LA, EVENT)]).iloc[:, 0])
        self._run_id = run_id
        return "STOPPED" if "stop" in seen else "STARTED" if "start" in seen else "PENDING"

    def _latest_run_id(self) -> str | None:
        runs = self.runs()
        return runs.run_id.iloc[-1] if len(runs) else None

    def use(self, run: int | None = None) -> Experiment:
        """Continue run ``run`` (default: the latest, if still started), else start a new one."""
        self.active_run(run)
        return self

    def active_run(self, run: int | None = None) -> int | None:
        """As ``use()``, returning the run's number (omega-ml's ``active_run``)."""
        if run is not None:
            self._run_id = self._run_ids([run])[0]
        elif self.status() != "STARTED":
            self.start()
        return self.run

    def pin(self, run=None, remove: bool = False) -> list[str]:
        """Keep a run's rows in the embedded store whatever ``OMTEL_RETENTION`` or ``omtel prune`` say (its events,
        task records, spans and profiling samples); ``remove=True`` lets them age out again. ``run``: a number, a
        run id, a list of either, ``'all'``, or None (this object's current run, else the latest). Returns the run
        ids. A ClickHouse store ages out by its table TTL instead and has no pins."""
        if isinstance(run, str) and run in ("all", "*"):
            ids = list(self.runs().run_id)
        elif run is None:
            ids = [r for r in (self._run_id or self._latest_run_id(),) if r]
        else:
            ids = self._run_ids(run if isinstance(run, (list, tuple)) else [run])
        store = self.store
        if not hasattr(store, "pin"):
            raise StoreError(f"pins are for the embedded SQLite store, not {store.url}: a ClickHouse store keeps rows "
                             "for its table TTL (omtel schema apply --ttl-days)")
        if remove:
            store.unpin(ids)
        else:
            store.pin(ids, self.name)
        return ids

    # -- the with block ----------------------------------------------------------------------------------------
    def __enter__(self) -> Experiment:
        if not self.tracking:
            return self
        self._started_here = self._implied_run or self.status() in ("STOPPED", "PENDING")
        if self._started_here:
            self.start()
        self._token = context.attach(run_context(self.name, self._run_id, self.provider, self.interval,
                                                 self._span.span if self._span is not None else None))
        if self.provider == "profiling":
            self.profiler.attributes = {EXPERIMENT: self.name, RUN: self._run_id}
            self.profiler.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.tracking:
            return
        if self._profiler is not None:
            self._profiler.stop()
        if self._token is not None:
            context.detach(self._token)
            self._token = None
        if exc is not None and self._span is not None:
            self._span.failed(str(exc))
        if self._started_here:
            self.stop()

    # -- profiling ---------------------------------------------------------------------------------------------
    @property
    def profiler(self) -> ProfileSampler:
        """The client-side sampler (profiling provider); ``exp.profiler.interval = 0.1`` as in omega-ml."""
        if self._profiler is None:
            self._profiler = pipeline_sampler({EXPERIMENT: self.name, RUN: self._run_id or ""}, self._interval)
        return self._profiler

    @property
    def interval(self) -> float:
        return self._profiler.interval if self._profiler is not None else self._interval

    # -- logging -----------------------------------------------------------------------------------------------
    def _log(self, event: str, key: str | None = None, value: Any = None, step: int | None = None, dt=None,
             provider: str | None = None, **extra) -> None:
        if not self.tracking:
            return
        if self._run_id is None:
            raise ValueError("no active run, call .start() or .use() (or log inside `with om.runtime."
                             f"experiment({self.name!r}) as exp:`)")
        clash = set(extra) & {"experiment", "run", "event", "key", "value", "step", "dt", "node", "userid"}
        if clash:
            raise ValueError(f"extra key(s) {sorted(clash)} clash with event columns; rename them")
        fields = {**self._extra, **extra}
        attributes = {attr: str(v) for name, attr in _EVENT_FIELDS.items() if (v := fields.pop(name, None)) is not None}
        emit_event(self.name, self._run_id, event, key, value, step, dt, fields, provider, attributes=attributes)
        if event in (Event.START, Event.STOP):
            # other processes number runs and check their status from these; everything else is flushed
            # within OMTEL_FLUSH_INTERVAL, and data() flushes this process first
            flush_outside_task()

    def log_metric(self, key: str, value, step: int | None = None, dt=None, **extra) -> None:
        self._log(Event.METRIC, key, value, step, dt, **extra)

    def log_param(self, key: str, value, step: int | None = None, dt=None, **extra) -> None:
        self._log(Event.PARAM, key, value, step, dt, **extra)

    def log_event(self, event: str, key: str, value, step: int | None = None, dt=None, **extra) -> None:
        self._log(event, key, value, step, dt, **extra)

    def log_events(self, event: str, key: str, values, step: int | None = None, dt=None, **extra) -> None:
        dt = dt or utcnow()
        for value in values:
            self._log(event, key, value, step, dt, **extra)

    def log_artifact(self, obj, name: str, step: int | None = None, dt=None, event: str | None = None,
                     key: str | None = None, **extra) -> None:
        """Plain values are stored as they are, DataFrames as records. Anything else is pickled into the signed
        artifact store (OMTEL_ARTIFACTS), and the record carries only its hash and signature: a record anyone could
        have written must never be what gets unpickled."""
        if isinstance(obj, (bool, str, int, float, list, dict)) or obj is None:
            value = {"name": name, "data": obj, "format": "type"}
        elif isinstance(obj, pd.DataFrame):
            value = {"name": name, "data": json.loads(obj.to_json(orient="split", date_format="iso")),
                     "format": "dataframe"}
        elif isinstance(obj, pd.Series):
            value = {"name": name, "data": json.loads(obj.to_json(orient="split", date_format="iso")),
                     "format": "series"}
        else:
            value = {"name": name, **store_pickled(obj)}
        self._log(event or Event.ARTIFACT, key or name, value, step, dt, name=name, **extra)

    def log_data(self, key: str, value, step: int | None = None, dt=None, event: str | None = None,
                 **extra) -> None:
        self.log_artifact(value, key, step=step, dt=dt, event=event or Event.DATA, key=key, **extra)

    def log_system(self, key: str | None = None, value=None, step: int | None = None, dt=None, **extra) -> None:
        value = value or system_info()  # omega-ml's platform, python and packages, and the hardware
        self._log(Event.SYSTEM, key or "system", value, step, dt, **extra)

    def log_extra(self, remove: bool = False, **kwargs) -> None:
        if remove:
            for k in kwargs or list(self._extra):
                self._extra.pop(k, None)
        else:
            self._extra.update(kwargs)

    def flush(self) -> None:
        """Make the events logged so far readable by other processes now (omega-ml wrote its buffer here).
        Inside a task its records are written before its result is sent."""
        flush_outside_task()

    def restore_artifacts(self, key: str | None = None, experiment: str | None = None, run=None, since=None,
                          step=None, value=None, event: str | None = None, name: str | None = None) -> list:
        """The objects logged by ``log_artifact()`` (``event='artifact'``, or another event such as 'data'), in the
        order logged; ``run`` as ``data()`` (default: the current run). ``value``: restore a record's value (a dict,
        or a list of records as ``data(raw=True)`` gives them) instead of querying."""
        if value is None:
            records = self.data(experiment=experiment, run=run, since=since, event=event or Event.ARTIFACT,
                                step=step, key=key, raw=True, name=name) or []
        else:
            records = [{"value": value}] if isinstance(value, dict) else value
        return [restore(r["value"]) for r in records]

    def restore_artifact(self, *args, **kwargs):
        """Deprecated (omega-ml 0.17): the last of ``restore_artifacts()``, or None."""
        warnings.warn("restore_artifact() is deprecated, use exp.restore_artifacts() instead", DeprecationWarning,
                      stacklevel=2)
        restored = self.restore_artifacts(*args, **kwargs)
        return restored[-1] if restored else None

    def restore_data(self, key: str, run=None, event: str | None = None, since=None, concat: bool = True, **extra):
        """The values logged by ``log_data(key, ...)`` (``event='data'`` unless given). ``concat=True`` joins them
        as omega-ml does, by the type of the first: DataFrames and Series (arrays and lists among them as Series)
        with ``pd.concat``, arrays with ``np.concatenate``, anything else chained into one list."""
        restored = self.restore_artifacts(run=run, key=key, event=event or Event.DATA, since=since, **extra)
        if not concat:
            return restored
        if restored and isinstance(restored[0], (pd.DataFrame, pd.Series)):
            return pd.concat([pd.Series(v) if isinstance(v, (np.ndarray, list)) else v for v in restored], axis=0)
        if restored and isinstance(restored[0], np.ndarray):
            return np.concatenate(restored, axis=0)
        return list(chain(*restored))

    def clear(self, force: bool = False) -> None:
        """Remove everything logged so far from view, as omega-ml's dropped dataset: ``data()`` is None until the
        next run, and runs are numbered from 1 again. The store keeps the records (retention removes them)."""
        if not force:
            raise AssertionError("clear() removes all data of this experiment from view; call clear(force=True)")
        if not self.tracking:
            return
        emit_event(self.name, "", Event.CLEAR)
        flush_outside_task()
        self._run_id = None

    # -- reading -----------------------------------------------------------------------------------------------
    def _run_ids(self, runs: list, table: pd.DataFrame | None = None) -> list[str]:
        """Run ids of run numbers (negative: from the latest) or ids, by ``table`` (default: ``runs()``)."""
        ids = list((table if table is not None else self.runs()).run_id)
        out = []
        for r in runs:
            if isinstance(r, str) and len(r) == 32:
                out.append(r)
                continue
            n = int(r)
            if n < 0:
                n = max(len(ids) + 1 + n, 1)
            if not 1 <= n <= len(ids):
                raise ValueError(f"experiment {self.name!r} has runs 1..{len(ids)}, not {r}")
            out.append(ids[n - 1])
        return out

    def data(self, experiment: str | None = None, run=None, event=None, step=None, key=None, raw: bool = False,
             since=None, end=None, batchsize: int | None = None, slice=None, extra: bool = False,
             lazy: bool = False, **filters) -> pd.DataFrame | list | Iterator | None:
        """Events as a DataFrame with columns ``experiment, run, event, dt, node, step, key, value``.

        ``run``: None (this object's current run, or all runs when it has none or ``since`` is given), an int
        (negative counts from the latest), a list, a slice (inclusive, as omega-ml), or 'all'/'*'.
        ``event``/``key``/``step``: a value or a list. ``since``/``end``: datetime, timedelta, ISO string or
        '5h'. ``raw=True``: a list of dicts; ``batchsize=N``: a generator of frames (or lists); ``lazy=True``: an
        iterator of dicts (omega-ml returned a database cursor); ``slice=(a, b)``: rows a..b-1 after filtering.
        ``extra=True`` adds userid, taskid, run_id. Any other keyword filters on an extra field, as in omega-ml
        (``taskid=``, ``userid=``, ``node=``, ``name=``, a ``log_extra`` key; a list matches any of its values).
        None when nothing was tracked (or everything was cleared).
        """
        if experiment is not None and experiment != self.name:
            # reading another experiment must not declare it: its records are read whatever its provider
            return Experiment(experiment, "simple", store=self._store, declared=True).data(
                run=run, event=event, step=step, key=key, raw=raw, since=since, end=end, batchsize=batchsize,
                slice=slice, extra=extra, lazy=lazy, **filters)
        if not self.tracking:
            return None
        runs, cleared = self._runs_since_clear()
        if not len(runs):
            return None
        number = dict(zip(runs.run_id, runs.run))
        run_ids = self._select_runs(runs, run, since)
        if run_ids is None and cleared is not None:  # what was logged before clear() is gone, whatever its dt
            run_ids = list(runs.run_id)
        now = self._since_dtnow
        lower = parse_time(since, name="since", now=now) if not _is_all(since) else None
        upper = parse_time(end, name="end", future=True, now=now) if not _is_all(end) else None
        filters = {k: v for k, v in filters.items() if not _is_all(v)}
        df = self._events(run_ids, lower, upper, number, extra, filters)
        wants_profile = _is_all(event) or Event.PROFILE in as_list(event)
        profile = self._profile_rows(run_ids, lower, upper, number, extra, filters) if wants_profile else ()
        if len(profile):
            df = pd.concat([df, profile], ignore_index=True) if len(df) else profile
        df = filter_in(df, "event", event)
        df = filter_in(df, "key", key)
        df = filter_in(df, "step", step)
        if len(profile):  # events come time-ordered from the store; samples are merged in
            df = df.sort_values(["dt"], kind="stable", ignore_index=True)
        else:
            df = df.reset_index(drop=True)
        if slice is not None:
            a, b = (slice.start, slice.stop) if hasattr(slice, "start") else slice
            df = df.iloc[a:b].reset_index(drop=True)
        if batchsize:
            return batches(df, batchsize, raw)
        if lazy:
            return iter(df.to_dict("records"))
        return df.to_dict("records") if raw else df

    def _select_runs(self, runs: pd.DataFrame, run, since) -> list[str] | None:
        if run is None:
            if not _is_all(since) or self._run_id is None:
                return None
            return [self._run_id]
        if _is_all(run):
            return None
        if isinstance(run, slice):
            lo, hi = run.start or 1, run.stop if run.stop is not None else len(runs)
            return list(runs.run_id[(runs.run >= lo) & (runs.run <= hi)])
        return self._run_ids(run if isinstance(run, (list, tuple)) else [run], runs)

    def _events(self, run_ids, lower, upper, number, extra, filters) -> pd.DataFrame:
        conds = [*event_conds(self.name), Cond(_LA, "ne", "", key=RUN)]  # not the experiment/clear records
        if run_ids is not None:
            conds.append(Cond(_LA, "in", run_ids, key=RUN))
        users = filters.get("userid")  # the event's user or else the process's: no store filter says that, see below
        for name, value in filters.items():
            if name == "userid":
                continue
            column, key = _FILTER_KEYS.get(name, (_LA, EXTRA_PREFIX + name))
            if isinstance(value, (list, tuple, np.ndarray)):
                conds.append(Cond(column, "in", [_filter_value(v) for v in value], key=key))
            else:
                conds.append(Cond(column, "eq", _filter_value(value), key=key))
        cols = ["Timestamp", MapKey(_LA, RUN), MapKey(_LA, EVENT), MapKey(_RA, HOST_NAME),
                MapKey(_LA, STEP), MapKey(_LA, KEY), MapKey(_LA, VALUE)]
        with_user = extra or users is not None
        if with_user:
            cols += [MapKey(_RA, USER), MapKey(_LA, TASK_ID), MapKey(_LA, USER)]
        raw = self._query(conds=conds, columns=cols, since=lower, until=upper, python_strings=True)
        raw.columns = ["dt", "run_id", "event", "node", "step", "key", "value"] + (
            ["userid", "taskid", "event_userid"] if with_user else [])
        if with_user:  # log_extra(userid=...) names the event's user (_EVENT_FIELDS), else it is the process's
            raw["userid"] = raw.event_userid.where(raw.event_userid.notna(), raw.userid)
            if users is not None:
                users = users if isinstance(users, (list, tuple, np.ndarray)) else [users]
                raw = raw[raw.userid.isin([str(_filter_value(v)) for v in users])]
        df = pd.DataFrame({
            "experiment": self.name,
            "run": pd.array(per_distinct(raw.run_id, lambda ids: [number.get(i) for i in ids]), dtype="Int64"),
            "event": raw.event, "dt": raw.dt, "node": raw.node, "step": per_distinct(raw.step, numbers, np.nan),
            "key": raw.key.astype(object), "value": decode_values(raw.value)})
        if extra:
            for c in EXTRA_COLUMNS:
                df[c] = raw.loc[df.index, c].fillna("")
        return df.reset_index(drop=True)

    def _profile_rows(self, run_ids, lower, upper, number, extra, filters) -> pd.DataFrame:
        """The run's profiling samples as ``profile`` rows; with filters, only samples that carry the filtered
        field (task id, user, node, run id) with a matching value."""
        if set(filters) - set(_FILTER_KEYS):
            return ()  # samples carry no other extra field, so none matches
        conds = [Cond("Attributes", "eq", self.name, key=EXPERIMENT)]
        if run_ids is not None:
            conds.append(Cond("Attributes", "in", run_ids, key=RUN))
        m = self._query(metrics=True, conds=conds, since=lower, until=upper)
        rows = profile_rows(m, self.name, number, extra or bool(filters))
        for name, value in filters.items():
            rows = rows[rows[name].isin([str(v) for v in as_list(value)])]
        return rows if extra or not filters else rows.drop(columns=EXTRA_COLUMNS)

    def plot(self, run="all", **filters):
        """Profiling over time (CPU, memory, GPU per device) and metrics by run, as a matplotlib Figure."""
        return plot_experiment(self.data(run=run, **filters), title=self.name)

    @property
    def stats(self) -> ExperimentStatistics:
        """omega-ml's statistics: ``exp.stats.latency()``, ``metrics()``, ``throughput()``, ``utilization()``."""
        return ExperimentStatistics(self)

    def summary(self, **kwargs) -> pd.DataFrame:
        """Per metric key, ``describe()`` of its values over all runs, then run latency in seconds;
        ``perf_stats=True`` adds throughput (``group_latency``) and ``utilization``. See ``ExperimentStatistics``."""
        return self.stats.summary(**kwargs)


def _filter_value(value):
    """omega-ml's guard on filter values: basic types as they are, dates as the ISO strings events store them as,
    anything else as its ``str()``."""
    if isinstance(value, (str, int, float, bool)):
        return value
    return value.isoformat() if isinstance(value, date) else str(value)


class OmegaSimpleTracker(Experiment):
    """omega-ml's tracker class of the 'simple' (and 'default') provider."""


class OmegaProfilingTracker(OmegaSimpleTracker):
    """omega-ml's tracker class of the 'profiling' provider: samples the client in ``with`` blocks and the workers of
    the tasks sent there."""


class NoTrackTracker(Experiment):
    """omega-ml's tracker class of the 'notrack' provider: records nothing, ``data()`` is None."""


#: provider -> the class ``om.runtime.experiment()`` returns for it
TRACKERS: dict[str, type[Experiment]] = {"simple": OmegaSimpleTracker, "profiling": OmegaProfilingTracker,
                                         "notrack": NoTrackTracker}


def open_experiment(name: str, provider: str | None = None, implied_run: bool = True, store: Store | None = None,
                    interval: float | None = None, autotrack: bool = False, recreate: bool = False) -> Experiment:
    """``om.runtime.experiment()``: the experiment as an instance of its declared provider's tracker class.

    ``recreate=True`` declares the experiment anew with ``provider`` (default 'simple'), as omega-ml drops and
    re-creates its tracker: the new provider holds from now on, while the events logged so far stay and run numbers
    continue."""
    declared = declared_provider(name, _provider_name(provider), store, recreate=recreate)
    return TRACKERS[declared](name, declared, implied_run, store, interval, autotrack, declared=True)

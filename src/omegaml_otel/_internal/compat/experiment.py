"""``om.runtime.experiment()``: omega-ml's experiment tracking on OpenTelemetry.

A run is a root span (``experiment/<name>``); its trace id is the run's unique id, so concurrent runs never
collide. Run *numbers* are not stored: the reader numbers runs by the order of their ``start`` events (ties broken
by id), which stays correct with many clients and a collector in between. Inside ``with exp:`` the run's span and
baggage (experiment, run id, provider, profiling interval) are the current context, so every Celery task sent
there carries them to its worker, which records ``task_call``/``task_success``/``task_failure`` for the run and,
for the profiling provider, samples the worker while the task runs.
"""
from __future__ import annotations

import importlib.metadata
import json
import platform
from collections.abc import Iterator
from typing import Any

import pandas as pd
from opentelemetry import context

from omegaml_otel._internal.capture.context import flush_outside_task
from omegaml_otel._internal.capture.profiling import ProfileSampler, pipeline_sampler
from omegaml_otel._internal.capture.tracking import (
    RunSpan,
    declared_provider,
    emit_event,
    event_conds,
    run_context,
)
from omegaml_otel._internal.compat.artifacts import store_pickled
from omegaml_otel._internal.compat.expdata import (
    EXTRA_COLUMNS,
    as_list,
    batches,
    decode_values,
    filter_in,
    profile_rows,
    restore,
)
from omegaml_otel._internal.compat.plots import plot_experiment
from omegaml_otel._internal.compat.timeparse import parse_time, utcnow
from omegaml_otel._internal.export.pipeline import flush_for_read
from omegaml_otel._internal.stores import Cond, MapKey, Store, default_store
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


def _provider_name(provider: str | None) -> str | None:
    name = _ALIASES.get(provider, provider)
    if name is not None and name not in PROVIDERS:
        raise ValueError(f"unknown tracking provider {provider!r}; use one of {', '.join(PROVIDERS)} "
                         "('default' = 'simple')")
    return name


class Experiment:
    """One experiment; ``with`` blocks and ``start()``/``stop()`` make runs. Logging needs an active run."""

    def __init__(self, name: str, provider: str | None = None, implied_run: bool = True,
                 store: Store | None = None, interval: float | None = None):
        self.name = name
        self._store = store
        self._implied_run = implied_run
        self.provider = declared_provider(name, _provider_name(provider), store)
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
        """Every run of this experiment: run number, run id, start time, in start order."""
        starts = self._query(conds=event_conds(self.name, Event.START), columns=["Timestamp", MapKey(_LA, RUN)])
        starts.columns = ["start", "run_id"]
        starts = starts.sort_values(["start", "run_id"], kind="stable", ignore_index=True)
        starts.insert(0, "run", range(1, len(starts) + 1))
        return starts

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
        if run is not None:
            self._run_id = self._run_ids([run])[0]
        elif self.status() != "STARTED":
            self.start()
        return self

    active_run = use

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
        clash = set(extra) & {"experiment", "run", "event", "key", "value", "step", "dt", "node"}
        if clash:
            raise ValueError(f"extra key(s) {sorted(clash)} clash with event columns; rename them")
        emit_event(self.name, self._run_id, event, key, value, step, dt, {**self._extra, **extra}, provider)
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
        value = value or {
            "platform": platform.uname()._asdict(),
            "python": f"{platform.python_implementation()}-{platform.python_version()}",
            "packages": sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()),
        }
        self._log(Event.SYSTEM, key or "system", value, step, dt, **extra)

    def log_extra(self, remove: bool = False, **kwargs) -> None:
        if remove:
            for k in kwargs or list(self._extra):
                self._extra.pop(k, None)
        else:
            self._extra.update(kwargs)

    def restore_artifacts(self, key: str | None = None, run=None, since=None, step=None, value=None,
                          event: str | None = None, name: str | None = None) -> list:
        if value is None:
            df = self.data(event=event or [Event.ARTIFACT, Event.DATA], key=key, run=run if run is not None else "all",
                           since=since, step=step, extra=True)
            values = [] if df is None else list(df.value)
        else:
            values = [value]
        return [restore(v) for v in values if isinstance(v, dict) and (name is None or v.get("name") == name)]

    def restore_data(self, key: str, run=None, event: str | None = None, since=None, concat: bool = True):
        items = self.restore_artifacts(key=key, run=run, event=event or Event.DATA, since=since)
        if not concat or not items:
            return items
        if all(isinstance(i, (pd.DataFrame, pd.Series)) for i in items):
            return pd.concat(items)
        if all(isinstance(i, list) for i in items):
            return [x for i in items for x in i]
        return items

    def clear(self, force: bool = False) -> None:
        """Hide every event logged so far (the store keeps them; ``data()`` shows what comes after)."""
        if not force:
            raise AssertionError("clear() removes all data of this experiment from view; call clear(force=True)")
        emit_event(self.name, "", Event.CLEAR)
        flush_outside_task()
        self._run_id = None

    # -- reading -----------------------------------------------------------------------------------------------
    def _run_ids(self, runs: list) -> list[str]:
        table = self.runs()
        ids = list(table.run_id)
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

    def _cleared_at(self):
        found = self._query(conds=event_conds(self.name, Event.CLEAR), columns=["Timestamp"], limit=1,
                            descending=True)
        return found.Timestamp.iloc[0] if len(found) else None

    def data(self, experiment: str | None = None, run=None, event=None, step=None, key=None, raw: bool = False,
             since=None, end=None, batchsize: int | None = None, slice=None, extra: bool = False,
             lazy: bool = False, **filters) -> pd.DataFrame | list | Iterator | None:
        """Events as a DataFrame with columns ``experiment, run, event, dt, node, step, key, value``.

        ``run``: None (this object's current run, or all runs when it has none or ``since`` is given), an int
        (negative counts from the latest), a list, a slice (inclusive, as omega-ml), or 'all'/'*'.
        ``event``/``key``/``step``: a value or a list. ``since``/``end``: datetime, timedelta, ISO string or
        '5h'. ``raw=True``: a list of dicts; ``batchsize=N``: a generator of frames (or lists); ``lazy=True``: an
        iterator of dicts (omega-ml returned a database cursor); ``slice=(a, b)``: rows a..b-1 after filtering.
        ``extra=True`` adds userid, taskid, run_id. None when nothing was tracked.
        """
        if experiment is not None and experiment != self.name:
            return Experiment(experiment, store=self._store).data(
                run=run, event=event, step=step, key=key, raw=raw, since=since, end=end, batchsize=batchsize,
                slice=slice, extra=extra, lazy=lazy, **filters)
        if not self.tracking:
            return None
        runs = self.runs()
        if not len(runs):
            return None
        number = dict(zip(runs.run_id, runs.run))
        run_ids = self._select_runs(runs, run, since)
        now = self._since_dtnow
        lower = parse_time(since, name="since", now=now) if since is not None else None
        cleared = self._cleared_at()
        if cleared is not None:
            lower = max(lower, cleared) if lower is not None else cleared
        upper = parse_time(end, name="end", future=True, now=now) if end is not None else None
        df = self._events(run_ids, lower, upper, number, extra, filters)
        wants_profile = event is None or event in ("all", "*") or Event.PROFILE in as_list(event)
        profile = self._profile_rows(run_ids, lower, upper, number, extra) if wants_profile else ()
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
            if since is not None or self._run_id is None:
                return None
            return [self._run_id]
        if isinstance(run, str) and run in ("all", "*"):
            return None
        if isinstance(run, slice):
            lo, hi = run.start or 1, run.stop if run.stop is not None else len(runs)
            return list(runs.run_id[(runs.run >= lo) & (runs.run <= hi)])
        return self._run_ids(run if isinstance(run, (list, tuple)) else [run])

    def _events(self, run_ids, lower, upper, number, extra, filters) -> pd.DataFrame:
        conds = [*event_conds(self.name), Cond(_LA, "ne", "", key=RUN)]  # not the experiment/clear records
        if run_ids is not None:
            conds.append(Cond(_LA, "in", run_ids, key=RUN))
        for name, value in filters.items():
            conds.append(Cond(_LA, "in" if isinstance(value, (list, tuple)) else "eq",
                              value, key={"taskid": TASK_ID}.get(name, EXTRA_PREFIX + name)))
        cols = ["Timestamp", MapKey(_LA, RUN), MapKey(_LA, EVENT), MapKey(_RA, HOST_NAME),
                MapKey(_LA, STEP), MapKey(_LA, KEY), MapKey(_LA, VALUE)]
        if extra:
            cols += [MapKey(_RA, USER), MapKey(_LA, TASK_ID)]
        raw = self._query(conds=conds, columns=cols, since=lower, until=upper, python_strings=True)
        raw.columns = ["dt", "run_id", "event", "node", "step", "key", "value"] + (["userid", "taskid"] if extra
                                                                                   else [])
        df = pd.DataFrame({
            "experiment": self.name, "run": raw.run_id.map(number).astype("Int64"), "event": raw.event,
            "dt": raw.dt, "node": raw.node, "step": pd.to_numeric(raw.step, errors="coerce"),
            "key": raw.key.astype(object), "value": decode_values(raw.value)})
        if extra:
            for c in EXTRA_COLUMNS:
                df[c] = raw.loc[df.index, c].fillna("")
        return df.reset_index(drop=True)

    def _profile_rows(self, run_ids, lower, upper, number, extra) -> pd.DataFrame:
        conds = [Cond("Attributes", "eq", self.name, key=EXPERIMENT)]
        if run_ids is not None:
            conds.append(Cond("Attributes", "in", run_ids, key=RUN))
        m = self._query(metrics=True, conds=conds, since=lower, until=upper)
        return profile_rows(m, self.name, number, extra)

    def plot(self, run="all", **filters):
        """Profiling over time (CPU, memory, GPU per device) and metrics by run, as a matplotlib Figure."""
        return plot_experiment(self.data(run=run, **filters), title=self.name)

    def summary(self, run="all", **filters) -> pd.DataFrame:
        """Per metric key: describe() of its values over the selected runs, plus run latency (seconds)."""
        df = self.data(run=run, event=[Event.START, Event.STOP, Event.METRIC], **filters)
        if df is None or not len(df):
            return pd.DataFrame()
        metrics = df[df.event == "metric"]
        parts = {("metric", k): pd.to_numeric(g.value, errors="coerce").describe() for k, g in metrics.groupby("key")}
        bounds = df[df.event.isin(["start", "stop"])].groupby("run").dt.agg(["min", "max"])
        parts[("metric", "latency")] = ((bounds["max"] - bounds["min"]).dt.total_seconds()).describe()
        return pd.DataFrame(parts).T

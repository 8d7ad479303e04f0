"""``om.runtime.experiment()``: omega-ml's experiment tracking on OpenTelemetry.

A run is a root span (``experiment/<name>``); its trace id is the run's unique id, so concurrent runs never
collide. Run *numbers* are not stored: the reader numbers runs by the order of their ``start`` events (ties broken
by id), which stays correct with many clients and a collector in between. Inside ``with exp:`` the run's span and
baggage (experiment, run id, provider, profiling interval) are the current context, so every Celery task sent
there carries them to its worker, which records ``task_call``/``task_success``/``task_failure`` for the run and,
for the profiling provider, samples the worker while the task runs.
"""
from __future__ import annotations

import base64
import importlib.metadata
import json
import pickle
import platform
from collections.abc import Iterator
from typing import Any

import pandas as pd
from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from omegaml_otel.compat import events
from omegaml_otel.compat.logger import flush_outside_task
from omegaml_otel.compat.timeparse import parse_time, utcnow
from omegaml_otel.export.providers import telemetry
from omegaml_otel.settings import settings
from omegaml_otel.stores import Cond, MapKey, Store, StoreError, default_store

PROVIDERS = ("simple", "profiling", "notrack")
_ALIASES = {"default": "simple", None: None}
COLUMNS = ["experiment", "run", "event", "dt", "node", "step", "key", "value"]
EXTRA_COLUMNS = ["userid", "taskid", "run_id"]
PROFILE_KEYS = ["profile_dt", "memory_load", "memory_total", "cpu_load", "cpu_count", "cpu_freq", "cpu_avg",
                "disk_use", "disk_total"]
GPU_KEYS = ["gpu_load", "gpu_memory_load", "gpu_memory_used", "gpu_memory_total", "gpu_power", "gpu_temperature"]
_LA, _RA = "LogAttributes", "ResourceAttributes"
#: baggage keys a run puts on the context of tasks sent inside its block
BAGGAGE = {"experiment": events.EXPERIMENT, "run": events.RUN, "provider": events.PROVIDER,
           "interval": "omegaml.profile.interval"}


def _provider_name(provider: str | None) -> str | None:
    name = _ALIASES.get(provider, provider)
    if name is not None and name not in PROVIDERS:
        raise ValueError(f"unknown tracking provider {provider!r}; use one of {', '.join(PROVIDERS)} "
                         "('default' = 'simple')")
    return name


def sampler(attributes: dict, interval: float):
    """A ProfileSampler exporting where this process's metrics go."""
    from omegaml_otel.capture.profiling import ProfileSampler

    tel = telemetry()
    return ProfileSampler(tel.metric_exporters(), tel.resource, attributes, interval=interval)


class Experiment:
    """One experiment; ``with`` blocks and ``start()``/``stop()`` make runs. Logging needs an active run."""

    def __init__(self, name: str, provider: str | None = None, implied_run: bool = True,
                 store: Store | None = None, interval: float | None = None):
        self.name = name
        self._store = store
        self._implied_run = implied_run
        self.provider = self._persisted_provider(_provider_name(provider))
        self._run_id: str | None = None
        self._span = None
        self._token = None
        self._started_here = False
        self._extra: dict[str, Any] = {}
        self._since_dtnow = None
        self._profiler = None
        self._interval = float(interval) if interval is not None else settings().profile_interval

    # -- persistence of the provider ---------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self._store or default_store()

    def _persisted_provider(self, provider: str | None) -> str:
        if provider == "notrack":
            return provider
        try:
            telemetry().flush_logs()
            found = self.store.logs(conds=self._conds(event="experiment"), columns=[MapKey(_LA, events.PROVIDER)],
                                    limit=1)
        except StoreError:  # no readable store here (e.g. OTLP only): the caller's choice stands
            found = ()
        if len(found):
            return found.iloc[0, 0]
        provider = provider or "simple"
        events.emit(self.name, "", "experiment", provider=provider)
        flush_outside_task()
        return provider

    def _conds(self, event=None, run=None) -> list[Cond]:
        """Filters for this experiment's events. The event is read from its attribute, not from ``EventName``:
        collectors that write the classic log columns (rotel) leave ``EventName`` empty. A single event is first
        matched on the plain ``Body`` (it starts with the event), so stores skip most rows before decoding any
        attribute JSON; the attribute stays the real test."""
        conds = [Cond("ScopeName", "eq", events.SCOPE)]
        if isinstance(event, str):
            conds.append(Cond("Body", "startswith", event))
        conds.append(Cond(_LA, "eq", self.name, key=events.EXPERIMENT))
        if event is not None:
            conds.append(Cond(_LA, "in" if isinstance(event, (list, tuple)) else "eq", event, key=events.EVENT))
        if run is not None:
            conds.append(Cond(_LA, "in" if isinstance(run, (list, tuple)) else "eq", run, key=events.RUN))
        return conds

    # -- runs --------------------------------------------------------------------------------------------------
    @property
    def tracking(self) -> bool:
        return self.provider != "notrack"

    def runs(self) -> pd.DataFrame:
        """Every run of this experiment: run number, run id, start time, in start order."""
        telemetry().flush_logs()
        starts = self.store.logs(conds=self._conds(event="start"), columns=["Timestamp", MapKey(_LA, events.RUN)])
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
        tracer = telemetry().tracer_provider.get_tracer("omegaml_otel.experiment")
        self._span = tracer.start_span(f"experiment/{self.name}", context=Context(),
                                       attributes={events.EXPERIMENT: self.name, events.PROVIDER: self.provider})
        self._run_id = format(self._span.get_span_context().trace_id, "032x")
        self._log("start", provider=self.provider)
        return self.run

    def stop(self) -> None:
        if not self.tracking or self._run_id is None:
            return
        self._log("stop")
        if self._span is not None:
            self._span.end()
            self._span = None

    def status(self, run: int | None = None) -> str:
        if not self.tracking:
            return "STOPPED"
        run_id = self._run_ids([run])[0] if run is not None else (self._run_id or self._latest_run_id())
        if run_id is None:
            return "PENDING"
        telemetry().flush_logs()
        seen = set(self.store.logs(conds=self._conds(run=run_id, event=["start", "stop"]),
                                   columns=[MapKey(_LA, events.EVENT)]).iloc[:, 0])
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
        span = self._span or trace.NonRecordingSpan(trace.SpanContext(int(self._run_id, 16), 1, False))
        ctx = trace.set_span_in_context(span, Context())
        for attr, value in ((BAGGAGE["experiment"], self.name), (BAGGAGE["run"], self._run_id),
                            (BAGGAGE["provider"], self.provider), (BAGGAGE["interval"], str(self.interval))):
            ctx = baggage.set_baggage(attr, value, ctx)
        self._token = context.attach(ctx)
        if self.provider == "profiling":
            self.profiler.attributes = {events.EXPERIMENT: self.name, events.RUN: self._run_id}
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
            self._span.set_status(Status(StatusCode.ERROR, str(exc)))
        if self._started_here:
            self.stop()

    # -- profiling ---------------------------------------------------------------------------------------------
    @property
    def profiler(self):
        """The client-side sampler (profiling provider); ``exp.profiler.interval = 0.1`` as in omega-ml."""
        if self._profiler is None:
            self._profiler = sampler({events.EXPERIMENT: self.name, events.RUN: self._run_id or ""},
                                     self._interval)
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
        events.emit(self.name, self._run_id, event, key, value, step, dt, {**self._extra, **extra}, provider)
        if event in ("start", "stop"):
            # other processes number runs and check their status from these; everything else is flushed
            # within OMTEL_FLUSH_INTERVAL, and data() flushes this process first
            flush_outside_task()

    def log_metric(self, key: str, value, step: int | None = None, dt=None, **extra) -> None:
        self._log("metric", key, value, step, dt, **extra)

    def log_param(self, key: str, value, step: int | None = None, dt=None, **extra) -> None:
        self._log("param", key, value, step, dt, **extra)

    def log_event(self, event: str, key: str, value, step: int | None = None, dt=None, **extra) -> None:
        self._log(event, key, value, step, dt, **extra)

    def log_events(self, event: str, key: str, values, step: int | None = None, dt=None, **extra) -> None:
        dt = dt or utcnow()
        for value in values:
            self._log(event, key, value, step, dt, **extra)

    def log_artifact(self, obj, name: str, step: int | None = None, dt=None, event: str | None = None,
                     key: str | None = None, **extra) -> None:
        """Plain values are stored as they are, DataFrames as records, anything else pickled (base64)."""
        if isinstance(obj, (bool, str, int, float, list, dict)) or obj is None:
            value = {"name": name, "data": obj, "format": "type"}
        elif isinstance(obj, pd.DataFrame):
            value = {"name": name, "data": json.loads(obj.to_json(orient="split", date_format="iso")),
                     "format": "dataframe"}
        elif isinstance(obj, pd.Series):
            value = {"name": name, "data": json.loads(obj.to_json(orient="split", date_format="iso")),
                     "format": "series"}
        else:
            value = {"name": name, "data": base64.b64encode(pickle.dumps(obj)).decode(), "format": "pickle"}
        self._log(event or "artifact", key or name, value, step, dt, name=name, **extra)

    def log_data(self, key: str, value, step: int | None = None, dt=None, event: str | None = None,
                 **extra) -> None:
        self.log_artifact(value, key, step=step, dt=dt, event=event or "data", key=key, **extra)

    def log_system(self, key: str | None = None, value=None, step: int | None = None, dt=None, **extra) -> None:
        value = value or {
            "platform": platform.uname()._asdict(),
            "python": f"{platform.python_implementation()}-{platform.python_version()}",
            "packages": sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()),
        }
        self._log("system", key or "system", value, step, dt, **extra)

    def log_extra(self, remove: bool = False, **kwargs) -> None:
        if remove:
            for k in kwargs or list(self._extra):
                self._extra.pop(k, None)
        else:
            self._extra.update(kwargs)

    def restore_artifacts(self, key: str | None = None, run=None, since=None, step=None, value=None,
                          event: str | None = None, name: str | None = None) -> list:
        if value is None:
            df = self.data(event=event or ["artifact", "data"], key=key, run=run if run is not None else "all",
                           since=since, step=step, extra=True)
            values = [] if df is None else list(df.value)
        else:
            values = [value]
        return [_restore(v) for v in values if isinstance(v, dict) and (name is None or v.get("name") == name)]

    def restore_data(self, key: str, run=None, event: str | None = None, since=None, concat: bool = True):
        items = self.restore_artifacts(key=key, run=run, event=event or "data", since=since)
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
        events.emit(self.name, "", "clear")
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
        found = self.store.logs(conds=self._conds(event="clear"), columns=["Timestamp"], limit=1, descending=True)
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
        telemetry().flush()
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
        wants_profile = event is None or event in ("all", "*") or "profile" in _as_list(event)
        profile = self._profile_rows(run_ids, lower, upper, number, extra) if wants_profile else ()
        if len(profile):
            df = pd.concat([df, profile], ignore_index=True) if len(df) else profile
        df = _filter(df, "event", event)
        df = _filter(df, "key", key)
        df = _filter(df, "step", step)
        if len(profile):  # events come time-ordered from the store; samples are merged in
            df = df.sort_values(["dt"], kind="stable", ignore_index=True)
        else:
            df = df.reset_index(drop=True)
        if slice is not None:
            a, b = (slice.start, slice.stop) if hasattr(slice, "start") else slice
            df = df.iloc[a:b].reset_index(drop=True)
        if batchsize:
            return _batches(df, batchsize, raw)
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
        conds = [*self._conds(), Cond(_LA, "ne", "", key=events.RUN)]  # not the experiment/clear records
        if run_ids is not None:
            conds.append(Cond(_LA, "in", run_ids, key=events.RUN))
        for name, value in filters.items():
            conds.append(Cond(_LA, "in" if isinstance(value, (list, tuple)) else "eq",
                              value, key={"taskid": "celery.task_id"}.get(name, events.EXTRA + name)))
        cols = ["Timestamp", MapKey(_LA, events.RUN), MapKey(_LA, events.EVENT), MapKey(_RA, "host.name"),
                MapKey(_LA, events.STEP), MapKey(_LA, events.KEY), MapKey(_LA, events.VALUE)]
        if extra:
            cols += [MapKey(_RA, "omegaml.user"), MapKey(_LA, "celery.task_id")]
        raw = self.store.logs(conds=conds, columns=cols, since=lower, until=upper, python_strings=True)
        raw.columns = ["dt", "run_id", "event", "node", "step", "key", "value"] + (["userid", "taskid"] if extra
                                                                                   else [])
        df = pd.DataFrame({
            "experiment": self.name, "run": raw.run_id.map(number).astype("Int64"), "event": raw.event,
            "dt": raw.dt, "node": raw.node, "step": pd.to_numeric(raw.step, errors="coerce"),
            "key": raw.key.astype(object), "value": _decode(raw.value)})
        if extra:
            for c in EXTRA_COLUMNS:
                df[c] = raw.loc[df.index, c].fillna("")
        return df.reset_index(drop=True)

    def _profile_rows(self, run_ids, lower, upper, number, extra) -> pd.DataFrame:
        conds = [Cond("Attributes", "eq", self.name, key=events.EXPERIMENT)]
        if run_ids is not None:
            conds.append(Cond("Attributes", "in", run_ids, key=events.RUN))
        m = self.store.metrics(conds=conds, since=lower, until=upper)
        return profile_rows(m, self.name, number, extra)

    def plot(self, run="all", **filters):
        """Profiling over time (CPU, memory, GPU per device) and metrics by run, as a matplotlib Figure."""
        from omegaml_otel.compat.plots import plot_experiment

        return plot_experiment(self.data(run=run, **filters), title=self.name)

    def summary(self, run="all", **filters) -> pd.DataFrame:
        """Per metric key: describe() of its values over the selected runs, plus run latency (seconds)."""
        df = self.data(run=run, event=["start", "stop", "metric"], **filters)
        if df is None or not len(df):
            return pd.DataFrame()
        metrics = df[df.event == "metric"]
        parts = {("metric", k): pd.to_numeric(g.value, errors="coerce").describe() for k, g in metrics.groupby("key")}
        bounds = df[df.event.isin(["start", "stop"])].groupby("run").dt.agg(["min", "max"])
        parts[("metric", "latency")] = ((bounds["max"] - bounds["min"]).dt.total_seconds()).describe()
        return pd.DataFrame(parts).T


def _decode(values: pd.Series) -> list:
    """JSON values of many events in one parse (a json.loads per row is most of reading 100k events)."""
    texts = [v if isinstance(v, str) else "null" for v in values.tolist()]
    return json.loads("[" + ",".join(texts) + "]") if texts else []


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def _filter(df: pd.DataFrame, column: str, value) -> pd.DataFrame:
    if value is None or (isinstance(value, str) and value in ("all", "*")):
        return df
    return df[df[column].isin(_as_list(value))]


def _batches(df: pd.DataFrame, size: int, raw: bool):
    for i in range(0, len(df), size):
        part = df.iloc[i:i + size]
        yield part.to_dict("records") if raw else part


def _restore(value: dict):
    fmt, data = value.get("format"), value.get("data")
    if fmt == "dataframe":
        return pd.DataFrame(**data)
    if fmt == "series":
        return pd.Series(data["data"], index=data["index"], name=data.get("name"))
    if fmt == "pickle":
        return pickle.loads(base64.b64decode(data))
    return data


def profile_rows(m: pd.DataFrame, experiment: str, number: dict, extra: bool = False) -> pd.DataFrame:
    """Metric data points of profiling samples -> omega-ml's ``profile`` rows (nine keys per sample, in the seed's
    units: percentages, bytes, GHz, load per CPU; GPU keys when a GPU was sampled)."""
    columns = COLUMNS + (EXTRA_COLUMNS if extra else [])
    if not len(m):
        return pd.DataFrame(columns=columns)
    attrs = m.Attributes
    m = m.assign(run_id=[a.get(events.RUN, "") for a in attrs], node=[r.get("host.name", "") for r in
                                                                        m.ResourceAttributes],
                 cpu=[int(a.get("cpu.logical_number", -1)) for a in attrs], hw=[a.get("hw.id", "") for a in attrs],
                 taskid=[a.get("celery.task_id", "") for a in attrs],
                 instance=[r.get("service.instance.id", "") for r in m.ResourceAttributes])
    rows = []
    for (run_id, node, instance, t), s in m.groupby(["run_id", "node", "instance", "TimeUnix"], sort=False):
        v = {name: g for name, g in s.groupby("MetricName")}

        def one(name, scale=1.0, digits=None, cast=float):
            if name not in v:
                return None
            x = v[name].Value.iloc[0] * scale
            return cast(round(x, digits) if digits is not None else x)

        def per(name, key, scale=1.0, digits=None):
            if name not in v:
                return None
            g = v[name].sort_values(key)
            return [round(x * scale, digits) if digits is not None else x * scale for x in g.Value]

        count = one("system.cpu.logical.count", cast=int) or 1
        loads = [one(f"system.cpu.load_average.{w}") for w in ("1m", "5m", "15m")]
        sample = {
            "profile_dt": pd.Timestamp(t).isoformat(),
            "memory_load": one("system.memory.utilization", 100, 1),
            "memory_total": one("system.memory.limit", cast=int),
            "cpu_load": per("system.cpu.utilization", "cpu", 100, 1),
            "cpu_count": count,
            "cpu_freq": per("system.cpu.frequency", "cpu", 1e-9, 3),
            "cpu_avg": [round(x / count, 4) for x in loads] if None not in loads else None,
            "disk_use": one("system.filesystem.utilization", 100, 1),
            "disk_total": one("system.filesystem.limit", cast=int),
        }
        if "hw.gpu.utilization" in v:
            sample.update({
                "gpu_load": per("hw.gpu.utilization", "hw", 100, 1),
                "gpu_memory_load": per("hw.gpu.memory.utilization", "hw", 100, 1),
                "gpu_memory_used": per("hw.gpu.memory.usage", "hw"),
                "gpu_memory_total": per("hw.gpu.memory.limit", "hw"),
                "gpu_power": per("hw.power", "hw", 1, 1),
                "gpu_temperature": per("hw.temperature", "hw", 1, 1),
            })
        base = {"experiment": experiment, "run": number.get(run_id), "event": "profile", "dt": t, "node": node}
        ex = {"userid": s.ResourceAttributes.iloc[0].get("omegaml.user", ""), "taskid": s.taskid.iloc[0],
              "run_id": run_id} if extra else {}
        rows.extend({**base, "key": k, "value": val, "_sample": (run_id, node), **ex}
                    for k, val in sample.items() if val is not None)
    df = pd.DataFrame(rows)
    # step: sample number within run and node, counting on across flushes and tasks
    sample_index = df.groupby("_sample", sort=False).dt.rank(method="dense").astype("int64") - 1
    df["step"] = sample_index.astype(float)
    df["run"] = df["run"].astype("Int64")
    return df[columns]


def _short(value, limit: int = 2000):
    """A task argument as task_call shows it: long strings (a job's source, say) are cut, not copied whole."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:200]}… ({len(value)} characters)"
    return value


class TaskRun:
    """The worker side of a tracked task: events for the run that sent it, and a sampler while it runs."""

    def __init__(self, experiment: str, run_id: str, provider: str, interval: float, task_id: str,
                 task_name: str, own_run: Experiment | None = None):
        self.experiment, self.run_id, self.provider = experiment, run_id, provider
        self.task_id, self.task_name = task_id, task_name
        self.own_run = own_run
        self._sampler = None
        if provider == "profiling":
            self._sampler = sampler({events.EXPERIMENT: experiment, events.RUN: run_id, "celery.task_id": task_id},
                                    interval)

    @classmethod
    def from_context(cls, task_id: str, task_name: str, kwargs: dict) -> TaskRun | None:
        name = baggage.get_baggage(BAGGAGE["experiment"])
        if name:
            return cls(str(name), str(baggage.get_baggage(BAGGAGE["run"]) or ""),
                       str(baggage.get_baggage(BAGGAGE["provider"]) or "simple"),
                       float(baggage.get_baggage(BAGGAGE["interval"]) or 1.0), task_id, task_name)
        legacy = (kwargs or {}).get("__experiment")
        if legacy:
            # an omega-ml client's __experiment kwarg without our context: the task makes a run of its own
            exp = Experiment(str(legacy), implied_run=False)
            if not exp.tracking:
                return None
            exp.start()
            return cls(exp.name, exp._run_id, exp.provider, exp.interval, task_id, task_name, own_run=exp)
        return None

    def called(self, args, kwargs) -> None:
        delegate = {k: _short(v) for k, v in (kwargs or {}).items() if not k.startswith("__")}
        events.emit(self.experiment, self.run_id, "task_call", self.task_name,
                    {"args": [_short(a) for a in args or ()], "kwargs": delegate})
        if self._sampler is not None:
            self._sampler.start()

    def finished(self, event: str, value: dict) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        events.emit(self.experiment, self.run_id, event, self.task_name, {**value, "task_id": self.task_id})
        if self.own_run is not None:
            self.own_run.stop()
            self.own_run = None


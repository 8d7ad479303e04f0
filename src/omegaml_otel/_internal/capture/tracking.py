"""Experiment tracking on the write path: runs as root spans, events as log records, and the worker side of a
tracked task.

A run is a root span ``experiment/<name>``; its trace id is the run's unique id. An event is a log record of scope
``omegaml.experiment`` whose attributes carry the experiment, the event, the run id, key, step and the value as JSON
(names in ``omegaml_otel.conventions``). The event is also the record's ``EventName``, but readers use the
attribute: rotel's ClickHouse exporter does not write ``EventName``. The body starts with the event, so readers can
filter on that plain column first. Inside a run's block the run travels to the workers as baggage; ``TaskRun``
reads it back there and records ``task_call``/``task_success``/``task_failure``; for the profiling provider it also
logs what the worker runs on (``system``) and samples the worker while the task runs.
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import sys
import time
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from omegaml_otel._internal.capture.context import flush_outside_task, record_attributes
from omegaml_otel._internal.capture.hardware import system_info
from omegaml_otel._internal.capture.profiling import ProfileSampler, pipeline_sampler
from omegaml_otel._internal.export.emitter import LogEmitter
from omegaml_otel._internal.export.pipeline import emitter_for, flush_for_read, pipeline
from omegaml_otel._internal.stores import Cond, MapKey, Store, default_store, schema
from omegaml_otel._internal.stores.base import to_ns
from omegaml_otel.conventions import (
    EVENT,
    EXPERIMENT,
    EXPERIMENT_SCOPE,
    EXTRA_PREFIX,
    KEY,
    PROFILE_INTERVAL,
    PROVIDER,
    RUN,
    RUN_TRACER,
    STEP,
    TASK_ID,
    VALUE,
    Event,
)
from omegaml_otel.errors import StoreError
from omegaml_otel.settings import settings

_LA = "LogAttributes"


def to_jsonable(value: Any) -> Any:
    """omega-ml's value coercion, without its silent ``str()`` of DataFrames: these become lists of records.

    pandas and numpy are looked up, not imported: a value can only be one of their objects when its module is
    loaded already, and a worker that logs plain values never loads them (lean workers)."""
    pd, np = sys.modules.get("pandas"), sys.modules.get("numpy")
    if pd is not None and isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records", date_format="iso"))
    if pd is not None and isinstance(value, pd.Series):
        return json.loads(value.to_json(orient="values", date_format="iso"))
    if np is not None and isinstance(value, np.ndarray):
        return value.tolist()
    if np is not None and isinstance(value, np.generic):  # .item() may be a date, timedelta or bytes: convert it too
        return to_jsonable(value.item())
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def emit_event(experiment: str, run_id: str, event: str, key: str | None = None, value: Any = None,
               step: int | None = None, dt: Any = None, extra: dict | None = None, provider: str | None = None,
               emitter: LogEmitter | None = None, attributes: dict[str, str] | None = None) -> None:
    """One experiment event as a log record (``emitter``: the pipeline's when not given). ``attributes`` replace
    those of the current task's records (omega-ml's ``log_extra(taskid=...)`` names the event's task)."""
    attrs = {**record_attributes.get(), **(attributes or {}), EXPERIMENT: experiment, RUN: run_id, EVENT: event}
    if key is not None:
        attrs[KEY] = str(key)
    if value is not None:
        attrs[VALUE] = json.dumps(to_jsonable(value), ensure_ascii=False)
    if step is not None:
        attrs[STEP] = int(step)
    if provider is not None:
        attrs[PROVIDER] = provider
    for k, v in (extra or {}).items():
        if v is not None:
            attrs[EXTRA_PREFIX + k] = v if isinstance(v, (str, int, float, bool)) else json.dumps(to_jsonable(v))
    ts = time.time_ns() if dt is None else to_ns(dt)
    (emitter or emitter_for()).emit(EXPERIMENT_SCOPE, timestamp=ts, severity_number=SeverityNumber.INFO,
                                    severity_text="INFO", body=f"{event} {key}" if key is not None else event,
                                    attributes=attrs, event_name=event)


def event_conds(experiment: str, event: str | list | None = None, run: str | list | None = None) -> list[Cond]:
    """Store filters for an experiment's events. A single event is first matched on the plain ``Body`` (it starts
    with the event), so stores skip most rows before decoding any attribute JSON; the attribute stays the test."""
    conds = [Cond("ScopeName", "eq", EXPERIMENT_SCOPE)]
    if isinstance(event, str):
        conds.append(Cond("Body", "startswith", event))
    conds.append(Cond(_LA, "eq", experiment, key=EXPERIMENT))
    if event is not None:
        conds.append(Cond(_LA, "in" if isinstance(event, (list, tuple)) else "eq", event, key=EVENT))
    if run is not None:
        conds.append(Cond(_LA, "in" if isinstance(run, (list, tuple)) else "eq", run, key=RUN))
    return conds


def declared_provider(experiment: str, provider: str | None, store: Store | None = None,
                      recreate: bool = False) -> str:
    """The provider of the experiment's newest declaration. A new experiment is declared with ``provider`` (default
    'simple'), and so is one re-created (``recreate=True``: omega-ml drops the tracker, keeps its events and makes a
    new tracker of ``provider``). ``notrack`` is used as asked and never declared.

    Read as plain rows, not a DataFrame: a worker resolves an omega-ml client's ``__experiment`` kwarg here, and
    lean workers never load pandas."""
    if provider == "notrack":
        return provider
    if not recreate:
        try:
            flush_for_read()
            found = (store or default_store()).rows(schema.LOGS, conds=event_conds(experiment, Event.DECLARED),
                                                    columns=[MapKey(_LA, PROVIDER)], limit=1, descending=True)
        except StoreError:  # no readable store here (e.g. OTLP only): the caller's choice stands
            found = []
        if found and found[0][0]:
            return str(found[0][0])
    provider = provider or "simple"
    emit_event(experiment, "", Event.DECLARED, provider=provider)
    flush_outside_task()
    return provider


class RunSpan:
    """The root span of a run; its trace id, as 32 hex digits, is the run id."""

    def __init__(self, experiment: str, provider: str, tracer_provider: trace.TracerProvider | None = None):
        tracer = (tracer_provider or pipeline().tracer_provider).get_tracer(RUN_TRACER)
        self.span: Span = tracer.start_span(f"experiment/{experiment}", context=Context(),
                                            attributes={EXPERIMENT: experiment, PROVIDER: provider})
        self.run_id = format(self.span.get_span_context().trace_id, "032x")

    def failed(self, message: str) -> None:
        self.span.set_status(Status(StatusCode.ERROR, message))

    def end(self) -> None:
        self.span.end()


def run_context(experiment: str, run_id: str, provider: str, interval: float, span: Span | None = None) -> Context:
    """The context of a run's block: its span (or, for a run started elsewhere, a stand-in with its trace id) and
    the baggage that carries the run to the workers of the tasks sent in the block."""
    span = span or trace.NonRecordingSpan(trace.SpanContext(int(run_id, 16), 1, False))
    ctx = trace.set_span_in_context(span, Context())
    for key, value in zip((EXPERIMENT, RUN, PROVIDER, PROFILE_INTERVAL), (experiment, run_id, provider, interval)):
        ctx = baggage.set_baggage(key, str(value), ctx)
    return ctx


def _short(value, limit: int = 2000):
    """A task argument as task_call shows it: long strings (a job's source, say) are cut, not copied whole."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:200]}… ({len(value)} characters)"
    return value


class TaskRun:
    """The worker side of a tracked task: events for the run that sent it, and a sampler while it runs."""

    def __init__(self, experiment: str, run_id: str, provider: str, interval: float, task_id: str,
                 task_name: str, own_run: RunSpan | None = None, emitter: LogEmitter | None = None):
        self.experiment, self.run_id, self.provider = experiment, run_id, provider
        self.task_id, self.task_name = task_id, task_name
        self.own_run = own_run
        self._emitter = emitter
        self._sampler: ProfileSampler | None = None
        if provider == "profiling":
            self._sampler = pipeline_sampler({EXPERIMENT: experiment, RUN: run_id, TASK_ID: task_id}, interval)

    @classmethod
    def from_context(cls, task_id: str, task_name: str, kwargs: dict,
                     emitter: LogEmitter | None = None) -> TaskRun | None:
        """The run a task was sent in (the baggage of its message), else None."""
        name = baggage.get_baggage(EXPERIMENT)
        if name:
            return cls(str(name), str(baggage.get_baggage(RUN) or ""), str(baggage.get_baggage(PROVIDER) or "simple"),
                       float(baggage.get_baggage(PROFILE_INTERVAL) or 1.0), task_id, task_name, emitter=emitter)
        legacy = (kwargs or {}).get("__experiment")
        if legacy:
            # an omega-ml client's __experiment kwarg without our context: the task makes a run of its own
            name = str(legacy)
            provider = declared_provider(name, None)
            if provider == "notrack":
                return None
            run = RunSpan(name, provider)
            emit_event(name, run.run_id, Event.START, provider=provider, emitter=emitter)
            return cls(name, run.run_id, provider, settings().profile_interval, task_id, task_name, own_run=run,
                       emitter=emitter)
        return None

    def called(self, args, kwargs) -> None:
        delegate = {k: v for k, v in (kwargs or {}).items() if not k.startswith("__")}
        value = {"args": list(args or ()), "kwargs": delegate}
        scrubber = (self._emitter or emitter_for()).scrubber
        if scrubber is not None:  # by key, before the kwargs become JSON: password=... never leaves the worker
            value = scrubber.value(value)
        value["args"] = [_short(a) for a in value["args"]]
        value["kwargs"] = {k: _short(v) for k, v in value["kwargs"].items()}
        if self.provider == "profiling":  # as the seed's start, system: what this task runs on, the worker's
            self._log_system()
        emit_event(self.experiment, self.run_id, Event.TASK_CALL, self.task_name, value, emitter=self._emitter)
        if self._sampler is not None:
            self._sampler.start()

    def _log_system(self) -> None:
        """The worker's ``system`` event, once per task run: a run's tasks may run on other machines than the
        client that started it (whose own ``system`` event follows its ``start``)."""
        try:
            value = system_info()
        except Exception as exc:  # what the worker runs on is extra: reading it must not cost the run its events
            value = {"error": f"could not read the system information: {exc!r}"}
        emit_event(self.experiment, self.run_id, Event.SYSTEM, "system", value, emitter=self._emitter)

    def finished(self, event: str, value: dict) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        emit_event(self.experiment, self.run_id, event, self.task_name, {**value, "task_id": self.task_id},
                   emitter=self._emitter)
        if self.own_run is not None:
            emit_event(self.experiment, self.run_id, Event.STOP, emitter=self._emitter)
            self.own_run.end()
            self.own_run = None

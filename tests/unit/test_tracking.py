"""Experiment tracking on the write path: events, value coercion, run context and the worker side of a task."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from opentelemetry import baggage, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import StatusCode

from omegaml_otel._internal.capture.context import record_attributes
from omegaml_otel._internal.capture.tracking import RunSpan, TaskRun, emit_event, event_conds, run_context, to_jsonable
from omegaml_otel._internal.export.emitter import LogEmitter
from omegaml_otel._internal.stores import Cond
from omegaml_otel.conventions import (
    BAGGAGE_KEYS,
    EVENT,
    EXPERIMENT,
    EXPERIMENT_SCOPE,
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

from .helpers import finished, memory_logs, memory_spans

RUN_ID = "0af7651916cd43dd8448eb211c80319c"


def test_emit_event_attributes_body_and_event_name():
    provider, exporter = memory_logs()
    when = dt.datetime(2024, 5, 1, 12, 0, 0)
    emit_event("exp1", RUN_ID, Event.METRIC, key="acc", value={"v": np.float64(0.5)}, step=np.int64(3), dt=when,
               extra={"note": "n", "weights": [1, 2], "skip": None}, provider="simple",
               emitter=LogEmitter(provider))
    [rec] = exporter.get_finished_logs()
    lr = rec.log_record
    assert rec.instrumentation_scope.name == EXPERIMENT_SCOPE
    assert dict(lr.attributes) == {EXPERIMENT: "exp1", RUN: RUN_ID, EVENT: "metric", KEY: "acc",
                                   VALUE: '{"v": 0.5}', STEP: 3, PROVIDER: "simple",
                                   "omegaml.extra.note": "n", "omegaml.extra.weights": "[1, 2]"}
    assert type(lr.attributes[STEP]) is int
    assert lr.body == "metric acc" and lr.body.startswith(lr.event_name)
    assert lr.event_name == "metric"
    assert (lr.severity_number, lr.severity_text) == (SeverityNumber.INFO, "INFO")
    assert lr.timestamp == int(pd.Timestamp(when).value)


def test_emit_event_minimal_and_task_context():
    provider, exporter = memory_logs()
    token = record_attributes.set({TASK_ID: "t-1"})
    try:
        emit_event("exp1", "", Event.START, emitter=LogEmitter(provider))
    finally:
        record_attributes.reset(token)
    [lr] = finished(exporter)
    assert dict(lr.attributes) == {TASK_ID: "t-1", EXPERIMENT: "exp1", RUN: "", EVENT: "start"}
    assert lr.body == "start" and lr.timestamp > 0


def test_emit_event_value_is_unicode_json():
    provider, exporter = memory_logs()
    emit_event("e", RUN_ID, Event.PARAM, key="name", value="héllo", emitter=LogEmitter(provider))
    [lr] = finished(exporter)
    assert lr.attributes[VALUE] == '"héllo"'


def test_to_jsonable():
    df = pd.DataFrame({"a": [1, 2], "t": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    assert to_jsonable(df) == [{"a": 1, "t": "2024-01-01T00:00:00.000"}, {"a": 2, "t": "2024-01-02T00:00:00.000"}]
    assert to_jsonable(pd.Series([1.5, None])) == [1.5, None]
    assert to_jsonable(np.arange(4).reshape(2, 2)) == [[0, 1], [2, 3]]
    scalar = to_jsonable(np.float32(0.25))
    assert scalar == 0.25 and type(scalar) is float
    assert type(to_jsonable(np.int64(7))) is int
    assert to_jsonable(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert to_jsonable(dt.date(2024, 1, 2)) == "2024-01-02"
    assert to_jsonable(b"\x00\xff") == "AP8="
    assert sorted(to_jsonable({3, 1, 2})) == [1, 2, 3]
    assert to_jsonable((1, (2, b"a"))) == [1, [2, "YQ=="]]
    assert to_jsonable({1: np.bool_(True), "k": None}) == {"1": True, "k": None}
    # numpy scalars whose .item() is no JSON type still end as JSON (json.dumps would raise on the raw item)
    assert json.dumps(to_jsonable(np.datetime64("2024-01-01"))) == '"2024-01-01"'
    assert json.dumps(to_jsonable(np.bytes_(b"x"))) == '"eA=="'
    assert isinstance(to_jsonable(np.timedelta64(5, "s")), str)

    class Thing:
        def __repr__(self):
            return "<Thing>"

    assert to_jsonable(Thing()) == "<Thing>"
    assert to_jsonable(["s", 1, 2.5, False]) == ["s", 1, 2.5, False]


def test_event_conds_shape():
    assert event_conds("exp1") == [Cond("ScopeName", "eq", EXPERIMENT_SCOPE),
                                   Cond("LogAttributes", "eq", "exp1", key=EXPERIMENT)]
    assert event_conds("exp1", "metric", RUN_ID) == [
        Cond("ScopeName", "eq", EXPERIMENT_SCOPE), Cond("Body", "startswith", "metric"),
        Cond("LogAttributes", "eq", "exp1", key=EXPERIMENT), Cond("LogAttributes", "eq", "metric", key=EVENT),
        Cond("LogAttributes", "eq", RUN_ID, key=RUN)]
    many = event_conds("exp1", ["start", "stop"], ["r1", "r2"])
    assert Cond("Body", "startswith", "start") not in many  # no Body shortcut for several events
    assert many[-2:] == [Cond("LogAttributes", "in", ["start", "stop"], key=EVENT),
                         Cond("LogAttributes", "in", ["r1", "r2"], key=RUN)]


def test_run_context_baggage_and_stand_in_span():
    ctx = run_context("exp1", RUN_ID, "profiling", 2.5)
    assert dict(baggage.get_all(ctx)) == {EXPERIMENT: "exp1", RUN: RUN_ID, PROVIDER: "profiling",
                                          PROFILE_INTERVAL: "2.5"}
    assert set(baggage.get_all(ctx)) == set(BAGGAGE_KEYS)
    span_ctx = trace.get_current_span(ctx).get_span_context()
    assert format(span_ctx.trace_id, "032x") == RUN_ID and span_ctx.is_valid


def test_run_span_is_the_run():
    provider, exporter = memory_spans()
    run = RunSpan("exp1", "simple", tracer_provider=provider)
    ctx = run_context("exp1", run.run_id, "simple", 1.0, span=run.span)
    assert trace.get_current_span(ctx) is run.span
    run.failed("it broke")
    run.end()
    [span] = exporter.get_finished_spans()
    assert span.name == "experiment/exp1" and span.instrumentation_scope.name == RUN_TRACER
    assert format(span.context.trace_id, "032x") == run.run_id and span.parent is None
    assert dict(span.attributes) == {EXPERIMENT: "exp1", PROVIDER: "simple"}
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "it broke")


def test_task_run_from_context():
    provider, _ = memory_logs()
    emitter = LogEmitter(provider)
    token = attach(run_context("exp1", RUN_ID, "simple", 0.5))
    try:
        run = TaskRun.from_context("task-1", "tasks.fit", {}, emitter=emitter)
    finally:
        detach(token)
    assert isinstance(run, TaskRun)
    assert (run.experiment, run.run_id, run.provider, run.task_id, run.task_name) == \
        ("exp1", RUN_ID, "simple", "task-1", "tasks.fit")
    assert run.own_run is None and run._sampler is None


def test_task_run_from_context_without_baggage_or_legacy_kwarg():
    token = attach(Context())  # an empty context: no run's baggage
    try:
        assert baggage.get_all() == {}
        assert TaskRun.from_context("task-1", "tasks.fit", {"x": 1}) is None
        assert TaskRun.from_context("task-1", "tasks.fit", None) is None
    finally:
        detach(token)


def test_task_run_called_then_finished_emits_events():
    provider, exporter = memory_logs()
    run = TaskRun("exp1", RUN_ID, "simple", 1.0, "task-1", "tasks.fit", emitter=LogEmitter(provider))
    long_text = "x" * 5000
    run.called((1, long_text), {"alpha": 0.1, "__experiment": "exp1", "__private": 1})
    run.finished(Event.TASK_SUCCESS, {"result": [1, 2]})
    call, success = finished(exporter)
    assert [call.event_name, success.event_name] == ["task_call", "task_success"]
    assert call.body == "task_call tasks.fit" and call.attributes[KEY] == "tasks.fit"
    value = json.loads(call.attributes[VALUE])
    assert value["kwargs"] == {"alpha": 0.1}  # '__' keyword arguments are the runtime's, not the task's
    assert value["args"][0] == 1 and value["args"][1] == "x" * 200 + "… (5000 characters)"
    assert json.loads(success.attributes[VALUE]) == {"result": [1, 2], "task_id": "task-1"}
    assert all(r.attributes[RUN] == RUN_ID and r.attributes[EXPERIMENT] == "exp1" for r in (call, success))


def test_task_call_and_success_values_are_scrubbed():
    """A tracked task's kwargs are scrubbed by key before they become JSON; a result echoing them is scrubbed
    by the emitter (the value stays JSON either way)."""
    provider, exporter = memory_logs()
    run = TaskRun("exp1", RUN_ID, "simple", 1.0, "task-1", "tasks.fit", emitter=LogEmitter(provider))
    secret = "hunter2" + "x" * 3000  # long: cut for display, but only after scrubbing
    run.called(("redis://:hunter2@host/0",), {"password": secret, "api_key": "k", "alpha": 0.1})
    run.finished(Event.TASK_SUCCESS, {"result": {"kwargs": {"password": "hunter2"}}})
    call, success = finished(exporter)
    value = json.loads(call.attributes[VALUE])
    assert value == {"args": ["redis://:[Scrubbed due to URL password]@host/0"],
                     "kwargs": {"password": "[Scrubbed due to password]", "api_key": "[Scrubbed due to api_key]",
                                "alpha": 0.1}}
    assert json.loads(success.attributes[VALUE])["result"] == {"kwargs": {"password": "[Scrubbed due to password]"}}


@pytest.mark.parametrize("event", [Event.TASK_FAILURE, Event.TASK_RETRY])
def test_task_run_finished_with_other_events(event):
    provider, exporter = memory_logs()
    run = TaskRun("exp1", RUN_ID, "simple", 1.0, "task-2", "tasks.fit", emitter=LogEmitter(provider))
    run.finished(event, {"exception": "ValueError('x')"})
    [lr] = finished(exporter)
    assert lr.attributes[EVENT] == event
    assert json.loads(lr.attributes[VALUE]) == {"exception": "ValueError('x')", "task_id": "task-2"}


def test_task_run_with_own_run_emits_stop_and_ends_its_span():
    provider, exporter = memory_logs()
    tracer_provider, span_exporter = memory_spans()
    own = RunSpan("exp1", "simple", tracer_provider=tracer_provider)
    run = TaskRun("exp1", own.run_id, "simple", 1.0, "task-3", "tasks.fit", own_run=own,
                  emitter=LogEmitter(provider))
    run.finished(Event.TASK_SUCCESS, {})
    assert [r.attributes[EVENT] for r in finished(exporter)] == ["task_success", "stop"]
    assert run.own_run is None
    assert [s.name for s in span_exporter.get_finished_spans()] == ["experiment/exp1"]


def test_a_profiling_task_run_logs_the_workers_system_before_task_call():
    """Once per task run, what the worker runs on, as the client logs its own after ``start``."""
    provider, exporter = memory_logs()
    run = TaskRun("exp1", RUN_ID, "simple", 1.0, "task-1", "tasks.fit", emitter=LogEmitter(provider))
    run.provider = "profiling"  # a profiling run's task, without its sampler (that would use this process's pipeline)
    run.called((), {})
    run.finished(Event.TASK_SUCCESS, {})
    records = finished(exporter)
    assert [r.attributes[EVENT] for r in records] == ["system", "task_call", "task_success"]
    system = records[0]
    assert system.attributes[KEY] == "system" and system.attributes[RUN] == RUN_ID
    value = json.loads(system.attributes[VALUE])
    assert value["platform"] == platform.uname()._asdict() and value["python"].endswith(platform.python_version())
    assert any(p.startswith("omegaml-otel==") for p in value["packages"]) and value["hardware"]["cpu_count"] >= 1


def test_a_failing_system_read_still_records_the_task(monkeypatch):
    """A platform read that fails cannot be caused on this machine, so ``system_info`` is replaced by one that
    raises: the run still gets its system row (saying why it is empty) and the task's own events."""
    def broken():
        raise OSError("no /proc here")

    monkeypatch.setattr("omegaml_otel._internal.capture.tracking.system_info", broken)
    provider, exporter = memory_logs()
    run = TaskRun("exp1", RUN_ID, "simple", 1.0, "task-1", "tasks.fit", emitter=LogEmitter(provider))
    run.provider = "profiling"
    run.called((), {})
    system, call = finished(exporter)
    assert "no /proc here" in json.loads(system.attributes[VALUE])["error"]
    assert call.attributes[EVENT] == "task_call"


_DECLARATIONS = """
import sys
from omegaml_otel._internal.capture.tracking import declared_provider

first = declared_provider("exp", "profiling")
again = declared_provider("exp", "simple")  # an existing experiment keeps its provider
recreated = declared_provider("exp", None, recreate=True)  # omega-ml's recreate: a new tracker, 'simple' by default
after = declared_provider("exp", "profiling")  # the newest declaration holds
notrack = declared_provider("exp", "notrack")  # used as asked, never declared
print(first, again, recreated, after, notrack, declared_provider("exp", None), *sorted(
    {"pandas", "numpy", "pyarrow"} & set(sys.modules)))
"""


def test_declared_provider_takes_the_newest_declaration_without_pandas(tmp_path):
    """A worker resolves an omega-ml client's ``__experiment`` here: plain rows, so it stays lean. Run in a process of
    its own, with its own home: the lookup writes and reads through that process's pipeline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(OMTEL_HOME=str(tmp_path / "home"))
    run = subprocess.run([sys.executable, "-c", _DECLARATIONS], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["profiling", "profiling", "simple", "simple", "notrack", "simple"]

"""om.telemetry: the native reader (ClickHouse exporter column names) over a real worker's spans, logs, metrics."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

PING = "omegaml.tasks.omega_ping"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@pytest.fixture
def pinged(worker, om):
    """A ping with task logging on, and the times around it."""
    om.runtime.mode(logging=True)
    before = utcnow()
    result = om.runtime.ping(fox="reader", wait=False)
    value = result.get(timeout=30)
    after = utcnow()
    om.runtime.mode(logging=False)
    return result, value, before, after


def task_spans(om, task_id, **kw):
    return om.telemetry.spans(attributes={"messaging.message.id": task_id}, **kw)


def test_ping_spans(pinged, om):
    result, value, before, after = pinged
    assert value["kwargs"] == {"fox": "reader"}
    spans = task_spans(om, result.id)
    assert {"Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName",
            "SpanAttributes", "Duration", "StatusCode"} <= set(spans.columns)
    consumer = spans[spans.SpanName == f"run/{PING}"]
    producer = spans[spans.SpanName == f"apply_async/{PING}"]
    assert len(consumer) == 1 and len(producer) == 1
    consumer, producer = consumer.iloc[0], producer.iloc[0]
    assert consumer.SpanKind == "Consumer" and producer.SpanKind == "Producer"
    assert consumer.TraceId == producer.TraceId and len(consumer.TraceId) == 32
    assert consumer.ParentSpanId == producer.SpanId and len(producer.SpanId) == 16
    assert consumer.SpanId != producer.SpanId
    assert consumer.ServiceName == "omegaml-worker"
    assert producer.ServiceName.startswith("omegaml-")
    assert consumer.SpanAttributes["celery.task_name"] == PING
    assert consumer.StatusCode != "Error"
    assert consumer.Duration > 0
    assert pd.Timestamp(before) <= producer.Timestamp <= consumer.Timestamp <= pd.Timestamp(after)
    # the whole trace is these two spans (the producer is the root)
    trace = om.telemetry.spans(TraceId=consumer.TraceId)
    assert sorted(trace.SpanName) == sorted([f"apply_async/{PING}", f"run/{PING}"])
    assert list(trace[trace.SpanName == f"apply_async/{PING}"].ParentSpanId) == [""]


def test_logs_by_task_attributes(pinged, om):
    result, value, before, after = pinged
    logs = om.telemetry.logs(attributes={"celery.task_id": result.id})
    assert {"Timestamp", "TraceId", "SpanId", "SeverityText", "SeverityNumber", "ServiceName", "Body",
            "ResourceAttributes", "ScopeName", "LogAttributes"} <= set(logs.columns)
    bodies = list(logs.Body)
    for prefix in ("omega log:", "python log:", "package log:", "print log:"):
        assert sum(b.startswith(f"{prefix} running ping task") for b in bodies) == 1, (prefix, bodies)
    assert all(a["celery.task_id"] == result.id for a in logs.LogAttributes)
    assert all(a["celery.task_name"] == PING for a in logs.LogAttributes)
    ping_rows = logs[logs.Body.str.contains("running ping task")]
    assert set(ping_rows.ScopeName) == {"simple", "celery", "omegaml", "root"}
    assert set(ping_rows.SeverityText) == {"INFO"}
    # the print line is tagged as stream output
    printed = ping_rows[ping_rows.Body.str.startswith("print log:")].iloc[0]
    assert printed.LogAttributes.get("log.iostream") == "stdout"
    # logs are correlated with the task's consumer span
    consumer = task_spans(om, result.id, SpanName=f"run/{PING}")
    assert set(ping_rows.TraceId) == {consumer.TraceId.iloc[0]}
    assert set(ping_rows.SpanId) == {consumer.SpanId.iloc[0]}
    # resource attributes say where it ran
    assert all(r.get("service.name") == "omegaml-worker" for r in ping_rows.ResourceAttributes)
    assert all(r.get("host.name") for r in ping_rows.ResourceAttributes)
    # a task id that does not exist matches nothing; attribute values in a list are an 'in' filter
    assert len(om.telemetry.logs(attributes={"celery.task_id": "no-such-task"})) == 0
    both = om.telemetry.logs(attributes={"celery.task_id": [result.id, "no-such-task"]})
    assert len(both) == len(logs)


def test_column_filters_and_limit(pinged, om):
    result, *_ = pinged
    logs = om.telemetry.logs(attributes={"celery.task_id": result.id}, ScopeName="celery",
                             Body__startswith="python log:")
    assert len(logs) == 1 and logs.SeverityText.iloc[0] == "INFO"
    assert len(om.telemetry.logs(attributes={"celery.task_id": result.id}, ScopeName__in=["simple", "omegaml"])) == 2
    assert len(om.telemetry.logs(attributes={"celery.task_id": result.id}, Body__contains="package log")) == 1
    assert len(om.telemetry.logs(attributes={"celery.task_id": result.id}, limit=2)) == 2
    assert len(om.telemetry.spans(SpanName__startswith="run/", attributes={"messaging.message.id": result.id})) == 1
    assert len(om.telemetry.spans(resource={"service.name": "omegaml-worker"},
                                  attributes={"messaging.message.id": result.id})) == 1


def test_since_until(pinged, om):
    result, value, before, after = pinged
    names = sorted([f"apply_async/{PING}", f"run/{PING}"])
    assert sorted(task_spans(om, result.id, since=before, until=after).SpanName) == names
    assert len(task_spans(om, result.id, until=before)) == 0
    assert len(task_spans(om, result.id, since=after + timedelta(milliseconds=1))) == 0
    assert sorted(task_spans(om, result.id, since=timedelta(minutes=5)).SpanName) == names
    assert sorted(task_spans(om, result.id, since="5m", until="1m").SpanName) == names
    assert len(task_spans(om, result.id, since=utcnow() + timedelta(minutes=1))) == 0
    logs = om.telemetry.logs(attributes={"celery.task_id": result.id}, since=before, until=after)
    assert len(logs) >= 4
    assert (logs.Timestamp >= pd.Timestamp(before)).all() and (logs.Timestamp <= pd.Timestamp(after)).all()
    assert logs.Timestamp.is_monotonic_increasing
    assert len(om.telemetry.logs(attributes={"celery.task_id": result.id}, until=before)) == 0
    # aware datetimes are converted to UTC
    aware = before.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=-7)))
    assert sorted(task_spans(om, result.id, since=aware).SpanName) == names


def test_metrics_columns(worker, om):
    om.runtime.ping()
    df = om.telemetry.metrics()
    assert {"MetricName", "Value", "TimeUnix", "Attributes", "ResourceAttributes", "ServiceName"} <= set(df.columns)
    assert isinstance(df, pd.DataFrame)
    assert pd.api.types.is_datetime64_any_dtype(df.TimeUnix)


def test_metrics_gauge_and_updowncounter(om):
    from opentelemetry import metrics

    from omegaml_otel._internal.export.pipeline import pipeline

    tel = pipeline()
    run = uuid.uuid4().hex
    meter = metrics.get_meter("omtel.tests")
    gauge = meter.create_gauge("omtel.test.gauge", unit="By", description="a test gauge")
    counter = meter.create_up_down_counter("omtel.test.updown", unit="1")
    before = utcnow()
    gauge.set(42.5, {"test.run": run})
    counter.add(3, {"test.run": run})
    counter.add(-1, {"test.run": run})
    tel.flush()
    time.sleep(0.01)
    df = om.telemetry.metrics(attributes={"test.run": run})
    assert set(df.MetricName) == {"omtel.test.gauge", "omtel.test.updown"}
    g = df[df.MetricName == "omtel.test.gauge"]
    u = df[df.MetricName == "omtel.test.updown"]
    assert len(g) >= 1 and set(g.Value) == {42.5}
    assert len(u) >= 1 and u.Value.iloc[-1] == 2.0
    assert g.MetricUnit.iloc[0] == "By" and g.MetricDescription.iloc[0] == "a test gauge"
    assert g.Attributes.iloc[0] == {"test.run": run}
    assert g.ScopeName.iloc[0] == "omtel.tests"
    assert (df.TimeUnix >= pd.Timestamp(before)).all()
    assert df.TimeUnix.is_monotonic_increasing
    # the up-down counter lands in the sum table, not monotonic
    sums = om.telemetry.metrics(MetricName="omtel.test.updown", attributes={"test.run": run})
    assert len(sums) >= 1
    from omegaml_otel._internal.stores import Cond, default_store, schema
    raw = default_store().query(schema.SUM, conds=[Cond("Attributes", "eq", run, key="test.run")])
    assert len(raw) >= 1 and set(raw.IsMonotonic) == {0}
    assert len(om.telemetry.metrics(attributes={"test.run": run}, until=before)) == 0
    assert len(om.telemetry.metrics(MetricName="omtel.test.nothing")) == 0

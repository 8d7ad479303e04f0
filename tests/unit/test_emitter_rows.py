"""LogEmitter (fast path into an ExportBuffer and the SDK path), rows.* and StoreWriter into a temporary SQLite."""
from __future__ import annotations

import json

import pandas as pd
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from omegaml_otel._internal.export.emitter import LogEmitter, StoreLogRecord
from omegaml_otel._internal.export.rows import attributes_json, log_rows, metric_rows, span_rows, text
from omegaml_otel._internal.export.store import StoreWriter
from omegaml_otel._internal.stores import schema

from .helpers import SERVICE, CollectingBuffer, memory_logs, memory_spans, resource, store_url

T0 = 1_700_000_000_123_456_789


def _row(table, row):
    assert len(row) == len(schema.columns(table))
    return dict(zip(schema.columns(table), row))


def _emit(emitter, body="hello", scope="unit.scope", **kw):
    args = dict(timestamp=T0, severity_number=SeverityNumber.WARN, severity_text="WARNING", body=body,
                attributes={"a": "x", "n": 3, "flag": False, "seq": [1, "b"]})
    args.update(kw)
    emitter.emit(scope, **args)


def test_fast_path_adds_light_records_to_the_buffer():
    provider, exporter = memory_logs()
    buffer = CollectingBuffer()
    try:
        emitter = LogEmitter(provider, buffer)
        _emit(emitter, event_name="evt")
        _emit(emitter, body="second")
        assert buffer.pending() == 2 and buffer.batches == []
        assert buffer.flush() is True
    finally:
        buffer.shutdown()
    assert exporter.get_finished_logs() == ()  # the SDK logger is skipped
    first, second = buffer.items
    assert isinstance(first, StoreLogRecord) and first.log_record is first
    assert (first.body, first.timestamp, first.severity_number, first.event_name) == ("hello", T0,
                                                                                      SeverityNumber.WARN, "evt")
    assert first.instrumentation_scope.name == "unit.scope"
    assert first.instrumentation_scope is second.instrumentation_scope  # one scope object per name
    assert first.resource is provider.resource
    assert (first.trace_id, first.span_id, first.trace_flags) == (0, 0, 0)


def test_log_rows_of_fast_path_records():
    provider, _ = memory_logs()
    tracer_provider, _ = memory_spans()
    buffer = CollectingBuffer()
    try:
        emitter = LogEmitter(provider, buffer)
        with tracer_provider.get_tracer("unit").start_as_current_span("op") as span:
            _emit(emitter, event_name="evt")
        _emit(emitter, body={"k": "é"})
        buffer.flush()
    finally:
        buffer.shutdown()
    ctx = span.get_span_context()
    in_span, outside = (_row(schema.LOGS, r) for r in log_rows(buffer.items))
    assert in_span["Timestamp"] == T0
    assert in_span["TraceId"] == format(ctx.trace_id, "032x") and len(in_span["TraceId"]) == 32
    assert in_span["SpanId"] == format(ctx.span_id, "016x") and len(in_span["SpanId"]) == 16
    assert in_span["TraceFlags"] == int(ctx.trace_flags) and in_span["TraceFlags"] & 1  # sampled
    assert (in_span["SeverityText"], in_span["SeverityNumber"]) == ("WARNING", 13)
    assert in_span["ServiceName"] == SERVICE
    assert in_span["Body"] == "hello"
    assert json.loads(in_span["ResourceAttributes"])["host.name"] == "unit-host"
    assert (in_span["ScopeName"], in_span["ScopeVersion"], in_span["ScopeAttributes"]) == ("unit.scope", "", "{}")
    assert json.loads(in_span["LogAttributes"]) == {"a": "x", "n": "3", "flag": "false", "seq": '[1, "b"]'}
    assert in_span["EventName"] == "evt"
    assert (outside["TraceId"], outside["SpanId"], outside["TraceFlags"]) == ("", "", 0)
    assert outside["Body"] == '{"k": "é"}'
    assert outside["EventName"] == ""


def test_sdk_path_rows_equal_fast_path_rows():
    provider, exporter = memory_logs()
    buffer = CollectingBuffer()
    try:
        tracer_provider, _ = memory_spans()
        with tracer_provider.get_tracer("unit").start_as_current_span("op"):
            _emit(LogEmitter(provider), event_name="evt")  # no buffer: through the SDK logger
            _emit(LogEmitter(provider, buffer), event_name="evt")
        buffer.flush()
    finally:
        buffer.shutdown()
    assert log_rows(exporter.get_finished_logs()) == log_rows(buffer.items)


def test_span_rows():
    provider, exporter = memory_spans()
    tracer = provider.get_tracer("unit.tracer", "0.9")
    with tracer.start_as_current_span("parent") as parent:
        with tracer.start_as_current_span("child", kind=SpanKind.SERVER, attributes={"x": 1},
                                          links=[Link(parent.get_span_context(), {"why": "test"})]) as child:
            child.add_event("ev", {"e": True})
            child.set_status(Status(StatusCode.ERROR, "bad \udcff"))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    rows = {r[5]: _row(schema.TRACES, r) for r in span_rows(spans.values())}
    c, p = rows["child"], rows["parent"]
    pctx = parent.get_span_context()
    assert c["TraceId"] == p["TraceId"] == format(pctx.trace_id, "032x")
    assert c["ParentSpanId"] == p["SpanId"] == format(pctx.span_id, "016x") and p["ParentSpanId"] == ""
    assert (c["SpanKind"], p["SpanKind"]) == ("Server", "Internal")
    assert (c["StatusCode"], c["StatusMessage"], p["StatusCode"]) == ("Error", "bad \\udcff", "Unset")
    assert (c["ServiceName"], c["ScopeName"], c["ScopeVersion"]) == (SERVICE, "unit.tracer", "0.9")
    assert json.loads(c["SpanAttributes"]) == {"x": "1"}
    assert c["Timestamp"] == spans["child"].start_time
    assert c["Duration"] == spans["child"].end_time - spans["child"].start_time > 0
    assert json.loads(c["Events.Name"]) == ["ev"] and json.loads(c["Events.Attributes"]) == [{"e": "true"}]
    assert json.loads(c["Events.Timestamp"]) == [spans["child"].events[0].timestamp]
    assert json.loads(c["Links.TraceId"]) == [p["TraceId"]] and json.loads(c["Links.SpanId"]) == [p["SpanId"]]
    assert json.loads(c["Links.Attributes"]) == [{"why": "test"}]
    assert json.loads(p["Events.Name"]) == [] and json.loads(p["Links.TraceId"]) == []


def _metrics_data():
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=resource(), metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("unit.meter", "1.2")
    meter.create_gauge("g.temp", unit="Cel", description="temperature").set(21.5, {"room": "a"})
    meter.create_counter("c.requests").add(3)
    meter.create_up_down_counter("u.queue").add(-2)
    hist = meter.create_histogram("h.latency", unit="ms")
    hist.record(4)
    hist.record(6)
    return reader.get_metrics_data()


def test_metric_rows_land_in_their_tables():
    out = metric_rows(_metrics_data())
    assert set(out) == {schema.GAUGE, schema.SUM, schema.HISTOGRAM, schema.EXP_HISTOGRAM}
    assert out[schema.EXP_HISTOGRAM] == []  # none without a View that asks for one
    [g] = [_row(schema.GAUGE, r) for r in out[schema.GAUGE]]
    sums = {r["MetricName"]: r for r in (_row(schema.SUM, r) for r in out[schema.SUM])}
    [h] = [_row(schema.HISTOGRAM, r) for r in out[schema.HISTOGRAM]]
    assert (g["MetricName"], g["MetricUnit"], g["MetricDescription"], g["Value"]) == ("g.temp", "Cel",
                                                                                      "temperature", 21.5)
    assert json.loads(g["Attributes"]) == {"room": "a"}
    assert (g["ScopeName"], g["ScopeVersion"], g["ServiceName"]) == ("unit.meter", "1.2", SERVICE)
    assert g["TimeUnix"] > 0 and g["Flags"] == 0
    assert set(sums) == {"c.requests", "u.queue"}
    assert (sums["c.requests"]["Value"], sums["c.requests"]["IsMonotonic"]) == (3.0, 1)
    assert (sums["u.queue"]["Value"], sums["u.queue"]["IsMonotonic"]) == (-2.0, 0)
    assert sums["c.requests"]["AggregationTemporality"] == 2  # cumulative
    assert (h["MetricName"], h["Count"], h["Sum"], h["Min"], h["Max"]) == ("h.latency", 2, 10.0, 4.0, 6.0)
    bounds, counts = json.loads(h["ExplicitBounds"]), json.loads(h["BucketCounts"])
    assert len(counts) == len(bounds) + 1 and sum(counts) == 2 and bounds[:2] == [0.0, 5.0] and counts[:3] == [0, 1, 1]


def test_text_and_attributes_json():
    assert text("plain") == "plain"
    assert text("naïve ✓") == "naïve ✓"
    assert text("bad \udcff byte") == "bad \\udcff byte"
    assert text({"a": [1, "é"]}) == '{"a": [1, "é"]}'
    assert text(12) == "12"
    assert attributes_json(None) == attributes_json({}) == "{}"
    assert json.loads(attributes_json({"s": "x\udcfe", "b": True, "raw": b"\xff", "f": 1.5, "l": (1, None)})) == \
        {"s": "x\\udcfe", "b": "true", "raw": "\\xff", "f": "1.5", "l": '[1, "None"]'}


def test_store_writer_round_trip(tmp_path):
    provider, _ = memory_logs()
    buffer = CollectingBuffer()
    writer = StoreWriter(store_url(tmp_path))
    try:
        emitter = LogEmitter(provider, buffer)
        _emit(emitter, body="one", event_name="evt")
        _emit(emitter, body="two \udcff", timestamp=T0 + 1000)
        buffer.flush()
        writer.logs(buffer.items)
        tracer_provider, span_exporter = memory_spans()
        with tracer_provider.get_tracer("unit").start_as_current_span("stored-span"):
            pass
        writer.spans(span_exporter.get_finished_spans())
        writer.metrics(_metrics_data())
        store = writer.store
        logs = store.logs()
        assert list(logs.columns) == schema.columns(schema.LOGS)
        assert list(logs.Body) == ["one", "two \\udcff"]
        assert list(logs.Timestamp) == [pd.Timestamp(T0, unit="ns"), pd.Timestamp(T0 + 1000, unit="ns")]
        assert logs.LogAttributes[0] == {"a": "x", "n": "3", "flag": "false", "seq": '[1, "b"]'}
        assert logs.ResourceAttributes[0]["service.name"] == SERVICE
        assert (logs.ScopeName[0], logs.SeverityNumber[0], logs.EventName[0]) == ("unit.scope", 13, "evt")
        assert list(store.spans(columns=["SpanName"]).SpanName) == ["stored-span"]
        metrics = store.metrics()
        assert sorted(metrics.MetricName) == ["c.requests", "g.temp", "u.queue"]
        assert list(store.query(schema.HISTOGRAM, columns=["MetricName", "Count"]).itertuples(index=False)) == \
            [("h.latency", 2)]
    finally:
        buffer.shutdown()
        writer.store.close()

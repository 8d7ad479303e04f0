"""Turn SDK spans, log records and metric points into rows of the logical schema (stores/schema.py).

Values follow what the collector ClickHouse exporter writes: attribute values become strings, span kinds and status
codes their short names, ids lowercase hex ('' when absent).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import ExponentialHistogram, Gauge, Histogram, MetricsData, Sum
from opentelemetry.trace import SpanKind, StatusCode

from omegaml_otel._internal.stores import schema
from omegaml_otel.conventions import SERVICE_NAME

_KIND = {SpanKind.INTERNAL: "Internal", SpanKind.SERVER: "Server", SpanKind.CLIENT: "Client",
         SpanKind.PRODUCER: "Producer", SpanKind.CONSUMER: "Consumer"}
_STATUS = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}


def text(value: Any) -> str:
    """A string SQLite and ClickHouse accept: lone surrogates (from undecodable bytes) become escapes."""
    if not isinstance(value, str):
        value = json.dumps(value, default=str, ensure_ascii=False) if isinstance(value, (dict, list, tuple)) \
            else str(value)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _attr(value: Any) -> str:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (list, tuple)):
        return json.dumps([v if isinstance(v, (int, float, str, bool)) else str(v) for v in value],
                          ensure_ascii=False)
    return text(value)


def attributes_json(attrs: Mapping[str, Any] | None) -> str:
    if not attrs:
        return "{}"
    return json.dumps({k: _attr(v) for k, v in attrs.items()}, ensure_ascii=False)


class _ResourceCache:
    """Resources are shared by every record of a process; encode each once (again when its attributes are new: the
    pipeline's resource takes a forked child's own process attributes, pipeline.ProcessResource)."""

    def __init__(self):
        self._cache: dict[int, tuple[Any, str, str, Any]] = {}

    def get(self, resource) -> tuple[str, str]:
        hit = self._cache.get(id(resource))
        current = resource.attributes if resource is not None else None
        if hit is None or hit[0] is not resource or hit[3] is not current:
            attrs = dict(current) if current is not None else {}
            hit = (resource, attributes_json(attrs), text(attrs.get(SERVICE_NAME, "")), current)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[id(resource)] = hit
        return hit[1], hit[2]


_resources = _ResourceCache()


def _hex(value: int | None, width: int) -> str:
    return format(value, f"0{width}x") if value else ""


def _scope_columns(scope) -> tuple[str, str, str, str]:
    if scope is None:
        return "", "", "", "{}"
    return scope.schema_url or "", scope.name, scope.version or "", attributes_json(scope.attributes)


def log_rows(records: Iterable) -> list[tuple]:
    """The hot half of every log write: per-row work is kept to what differs between rows."""
    rows = []
    scopes: dict[int, tuple] = {}
    for rec in records:
        lr = rec.log_record
        resource = rec.resource
        res_json, service = _resources.get(resource)
        scope = rec.instrumentation_scope
        sc = scopes.get(id(scope))
        if sc is None:
            sc = scopes[id(scope)] = _scope_columns(scope)
        sev = lr.severity_number
        body = lr.body
        attrs = lr.attributes
        trace_id = lr.trace_id
        rows.append((
            lr.timestamp or lr.observed_timestamp,
            format(trace_id, "032x") if trace_id else "", format(lr.span_id, "016x") if trace_id else "",
            int(lr.trace_flags or 0), lr.severity_text or "", sev.value if sev is not None else 0, service,
            body if type(body) is str and body.isascii() else ("" if body is None else text(body)),
            (resource.schema_url or "") if resource is not None else "", res_json,
            sc[0], sc[1], sc[2], sc[3], attributes_json(attrs) if attrs else "{}", lr.event_name or "",
        ))
    return rows


def span_rows(spans: Iterable) -> list[tuple]:
    rows = []
    for span in spans:
        ctx = span.context
        res_json, service = _resources.get(span.resource)
        scope = span.instrumentation_scope
        parent = span.parent
        events, links = span.events or (), span.links or ()
        rows.append((
            span.start_time, _hex(ctx.trace_id, 32), _hex(ctx.span_id, 16),
            _hex(parent.span_id, 16) if parent is not None else "",
            ctx.trace_state.to_header() if ctx.trace_state else "",
            span.name, _KIND.get(span.kind, "Unspecified"), service, res_json,
            scope.name if scope else "", (scope.version or "") if scope else "",
            attributes_json(span.attributes), max(0, (span.end_time or span.start_time) - span.start_time),
            _STATUS.get(span.status.status_code, "Unset"), text(span.status.description or ""),
            json.dumps([e.timestamp for e in events]), json.dumps([e.name for e in events]),
            "[" + ",".join(attributes_json(e.attributes) for e in events) + "]",
            json.dumps([_hex(link.context.trace_id, 32) for link in links]),
            json.dumps([_hex(link.context.span_id, 16) for link in links]),
            json.dumps([link.context.trace_state.to_header() if link.context.trace_state else "" for link in links]),
            "[" + ",".join(attributes_json(link.attributes) for link in links) + "]",
        ))
    return rows


def metric_rows(data: MetricsData) -> dict[str, list[tuple]]:
    """Each point in the table of its type, as the collector exporter files them. These are all the point types
    the Python SDK makes; the fifth table, otel_metrics_summary, is for summaries that only collectors receive."""
    out: dict[str, list[tuple]] = {schema.GAUGE: [], schema.SUM: [], schema.HISTOGRAM: [], schema.EXP_HISTOGRAM: []}
    for rm in data.resource_metrics:
        res_json, service = _resources.get(rm.resource)
        for sm in rm.scope_metrics:
            scope = sm.scope
            head = (res_json, rm.schema_url or "", scope.name, scope.version or "",
                    attributes_json(scope.attributes), 0, sm.schema_url or "", service)
            for metric in sm.metrics:
                mhead = head + (metric.name, metric.description or "", metric.unit or "")
                d = metric.data
                for p in d.data_points:
                    base = mhead + (attributes_json(p.attributes), p.start_time_unix_nano or 0, p.time_unix_nano)
                    if isinstance(d, Gauge):
                        out[schema.GAUGE].append(base + (float(p.value), 0))
                    elif isinstance(d, Sum):
                        out[schema.SUM].append(base + (float(p.value), 0, int(d.aggregation_temporality),
                                                       int(bool(d.is_monotonic))))
                    elif isinstance(d, Histogram):
                        out[schema.HISTOGRAM].append(base + (
                            int(p.count), float(p.sum), json.dumps(list(p.bucket_counts)),
                            json.dumps(list(p.explicit_bounds)), float(p.min), float(p.max), 0,
                            int(d.aggregation_temporality)))
                    elif isinstance(d, ExponentialHistogram):
                        out[schema.EXP_HISTOGRAM].append(base + (
                            int(p.count), float(p.sum), int(p.scale), int(p.zero_count), int(p.positive.offset),
                            json.dumps(list(p.positive.bucket_counts)), int(p.negative.offset),
                            json.dumps(list(p.negative.bucket_counts)), float(p.min), float(p.max), int(p.flags),
                            int(d.aggregation_temporality)))
    return out

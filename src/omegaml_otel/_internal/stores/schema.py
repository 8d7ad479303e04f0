"""The logical schema: the OpenTelemetry collector ClickHouse exporter's tables and column names.

Both engines store exactly these columns so a user's SQL, Grafana panels and our readers agree. Kinds say how a
column is held: ``time`` (ns since epoch; DateTime64(9) in ClickHouse), ``map`` (string->string attribute map;
JSON text in SQLite), ``list`` (Nested/Array columns; JSON text in SQLite).
"""
from __future__ import annotations

LOGS = "otel_logs"
TRACES = "otel_traces"
GAUGE = "otel_metrics_gauge"
SUM = "otel_metrics_sum"
HISTOGRAM = "otel_metrics_histogram"
EXP_HISTOGRAM = "otel_metrics_exponential_histogram"
SUMMARY = "otel_metrics_summary"

_METRIC_COMMON = [
    ("ResourceAttributes", "map"), ("ResourceSchemaUrl", "str"), ("ScopeName", "str"), ("ScopeVersion", "str"),
    ("ScopeAttributes", "map"), ("ScopeDroppedAttrCount", "int"), ("ScopeSchemaUrl", "str"), ("ServiceName", "str"),
    ("MetricName", "str"), ("MetricDescription", "str"), ("MetricUnit", "str"), ("Attributes", "map"),
    ("StartTimeUnix", "time"), ("TimeUnix", "time"),
]

TABLES: dict[str, list[tuple[str, str]]] = {
    LOGS: [
        ("Timestamp", "time"), ("TraceId", "str"), ("SpanId", "str"), ("TraceFlags", "int"),
        ("SeverityText", "str"), ("SeverityNumber", "int"), ("ServiceName", "str"), ("Body", "str"),
        ("ResourceSchemaUrl", "str"), ("ResourceAttributes", "map"), ("ScopeSchemaUrl", "str"),
        ("ScopeName", "str"), ("ScopeVersion", "str"), ("ScopeAttributes", "map"), ("LogAttributes", "map"),
        ("EventName", "str"),
    ],
    TRACES: [
        ("Timestamp", "time"), ("TraceId", "str"), ("SpanId", "str"), ("ParentSpanId", "str"),
        ("TraceState", "str"), ("SpanName", "str"), ("SpanKind", "str"), ("ServiceName", "str"),
        ("ResourceAttributes", "map"), ("ScopeName", "str"), ("ScopeVersion", "str"), ("SpanAttributes", "map"),
        ("Duration", "int"), ("StatusCode", "str"), ("StatusMessage", "str"),
        ("Events.Timestamp", "list"), ("Events.Name", "list"), ("Events.Attributes", "list"),
        ("Links.TraceId", "list"), ("Links.SpanId", "list"), ("Links.TraceState", "list"),
        ("Links.Attributes", "list"),
    ],
    GAUGE: _METRIC_COMMON + [("Value", "float"), ("Flags", "int")],
    SUM: _METRIC_COMMON + [("Value", "float"), ("Flags", "int"), ("AggregationTemporality", "int"),
                           ("IsMonotonic", "int")],
    HISTOGRAM: _METRIC_COMMON + [("Count", "int"), ("Sum", "float"), ("BucketCounts", "list"),
                                 ("ExplicitBounds", "list"), ("Min", "float"), ("Max", "float"), ("Flags", "int"),
                                 ("AggregationTemporality", "int")],
    EXP_HISTOGRAM: _METRIC_COMMON + [("Count", "int"), ("Sum", "float"), ("Scale", "int"), ("ZeroCount", "int"),
                                     ("PositiveOffset", "int"), ("PositiveBucketCounts", "list"),
                                     ("NegativeOffset", "int"), ("NegativeBucketCounts", "list"), ("Min", "float"),
                                     ("Max", "float"), ("Flags", "int"), ("AggregationTemporality", "int")],
    # written by collectors only: the Python SDK has no summary aggregation (Prometheus and others send them)
    SUMMARY: _METRIC_COMMON + [("Count", "int"), ("Sum", "float"), ("ValueAtQuantiles.Quantile", "list"),
                               ("ValueAtQuantiles.Value", "list"), ("Flags", "int")],
}

#: the column that orders and time-filters each table
TIME_COLUMN = {LOGS: "Timestamp", TRACES: "Timestamp", GAUGE: "TimeUnix", SUM: "TimeUnix", HISTOGRAM: "TimeUnix",
               EXP_HISTOGRAM: "TimeUnix", SUMMARY: "TimeUnix"}

#: the whole-second copy of the time column that a ClickHouse layout partitions and orders by, where it has one:
#: ``TimestampTime DateTime DEFAULT toDateTime(Timestamp)`` in otel_logs as this project's DDL and the exporter up
#: to v0.150 create it. ClickHouse cannot derive a bound on it from a bound on the time column, so the readers bound
#: both (``QueryPlan.key_bounds``); tables without it (the v0.151+ logs layout, traces, metrics) are keyed on an
#: expression of the time column, which a time bound prunes by itself. Not part of ``TABLES``: no one writes it
KEY_TIME_COLUMN = {LOGS: "TimestampTime"}


def columns(table: str) -> list[str]:
    return [name for name, _ in TABLES[table]]


def check_column(table: str, column: str, want: str | None = None) -> str:
    """The kind of ``table.column``, or a ValueError listing the table's columns (or its map columns when
    ``want='map'`` and the column is not one)."""
    try:
        k = kind(table, column)
    except KeyError:
        raise ValueError(f"{table} has no column {column!r}; columns are {', '.join(columns(table))}") from None
    if want and k != want:
        raise ValueError(f"{table}.{column} is not an attribute map; map columns are "
                         f"{', '.join(c for c, kk in TABLES[table] if kk == 'map')}")
    return k


def kind(table: str, column: str) -> str:
    for name, k in TABLES[table]:
        if name == column:
            return k
    raise KeyError(column)

"""What ClickHouse reads for each query the readers and the Grafana panels issue, on chdb holding many daily parts.

Used by tests/test_key_pruning.py in a subprocess, because chdb opens one data folder per process:

    OMTEL_HOME=/abs/home OMTEL_STORE=chdb:///abs/dir python tests/support/key_pruning.py
    # prints {"shapes": {"<shape>": [{"sql", "params", "reads": [{"table", "parts", "granules"}]}]}, "checks": {...}}

``parts`` and ``granules`` are ``[selected, total]`` from ``EXPLAIN indexes = 1``, one entry per table read. The
readers' SQL is captured as they send it (the store's client is wrapped, and every call still reaches chdb), so the
test sees exactly what ``om.logger.dataset.get()``, ``follow()``, ``exp.data()`` and ``om.telemetry`` issue.
Merges are stopped, so each day's rows stay in their own part, as on a server a day's partition does.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pandas as pd

import grafana_panels as gp
import omegaml_otel as om
from omegaml_otel._internal.stores import Cond, default_store, schema
from omegaml_otel._internal.stores.clickhouse import ClickHouseStore
from omegaml_otel.conventions import DATASET, LEVELNO, LOG_DATASET, LOG_RESET, SYSTEM_LOGGER, TASK_ID
from schema_rows import row

DAYS = 20  #: days of history before today, one part each per table
ROWS_PER_DAY = 4_000
S = 10**9
HOUR = 3600 * S


def explain(client, sql: str, params: dict | None = None) -> list[dict]:
    """Per table read: ``{"table", "parts": [read, after the key, total], "granules": [...]}``. "After the key" is
    what the partition and primary-key conditions leave (what a time bound prunes); "read" is what the skip
    indexes leave of that (bloom filters on attribute values, say)."""
    lines = [r[0] for r in client.query("EXPLAIN indexes = 1 " + sql, parameters=params).result_rows]
    reads: list[dict] = []
    section = None
    for line in lines:
        text = line.strip(" │└─├")
        if m := re.search(r"ReadFromMergeTree \(([^)]+)\)", text):
            reads.append({"table": m[1], "parts": [None, None, None], "granules": [None, None, None]})
            section = None
        elif not reads:
            continue
        elif m := re.fullmatch(r"Parts: (\d+) \| Granules: (\d+)", text):
            reads[-1]["parts"][0], reads[-1]["granules"][0] = int(m[1]), int(m[2])
        elif text in ("Min-Max", "Partition", "PrimaryKey", "Skip"):
            section = text
        elif m := re.fullmatch(r"(Parts|Granules): (\d+)/(\d+)", text):
            counts = reads[-1][m[1].lower()]
            if counts[2] is None:
                counts[2] = int(m[3])
            if section in ("Min-Max", "Partition", "PrimaryKey"):
                counts[1] = int(m[2])
    return reads


#: the key bounds the readers add (``_ClickHouseDialect.key_condition``) and the panels (``$__timeFilter`` expanded)
_KEY_BOUND = re.compile(r" AND \(`TimestampTime` [<>]= toDateTime\(\{p\d+:UInt32\}\)\)"
                        r"| AND (\w+\.)?TimestampTime >= toDateTime64\(\d+, 9\)"
                        r" AND (\w+\.)?TimestampTime <= toDateTime64\(\d+, 9\)")


def same_rows_without_key_bounds(client, sql: str, params: dict | None) -> bool | None:
    """Whether ``sql`` returns what it returns without its bounds on TimestampTime (None: it has none)."""
    unbounded = _KEY_BOUND.sub("", sql)
    if unbounded == sql:
        return None
    rows = [sorted(map(repr, client.query(q, parameters=params).result_rows)) for q in (sql, unbounded)]
    return rows[0] == rows[1]


class Capture:
    """Records the SQL and parameters sent through a store's client during ``run``; every call still reaches chdb."""

    def __init__(self, store: ClickHouseStore):
        self.client = store._conn()
        self.sent: list[tuple[str, dict]] = []
        self.on = False
        for name in ("query", "query_df", "query_arrow"):
            self._wrap(name)

    def _wrap(self, name: str) -> None:
        real = getattr(self.client, name)

        def recorded(sql, *args, parameters=None, **kwargs):
            if self.on:
                self.sent.append((sql, dict(parameters or {})))
            return real(sql, *args, parameters=parameters, **kwargs)
        setattr(self.client, name, recorded)

    def run(self, fn: Callable[[], object]) -> tuple[object, list[tuple[str, dict]]]:
        self.sent, self.on = [], True
        try:
            result = fn()
        finally:
            self.on = False
        return result, self.sent


def stop_merges(client, database: str) -> None:
    for table in (schema.LOGS, schema.TRACES, schema.GAUGE, schema.SUM):
        client.command(f"SYSTEM STOP MERGES {database}.{table}")


def history(client, database: str, day_starts: list[int]) -> None:
    """ROWS_PER_DAY log records, spans and gauge points spread over each day (seconds since epoch), one INSERT per
    day and table: dataset records of the simple logger, with task ids."""
    step = 86400 / ROWS_PER_DAY
    for day in day_starts:
        ts = f"fromUnixTimestamp64Nano(toInt64(({day} + number * {step}) * 1e9))"
        client.command(
            f"INSERT INTO {database}.otel_logs (Timestamp, ServiceName, SeverityText, SeverityNumber, Body, ScopeName, "
            f"LogAttributes) SELECT {ts}, 'omegaml-worker', 'INFO', 9, concat('old ', toString(number)), 'simple', "
            f"map('{DATASET}', '{LOG_DATASET}', '{LEVELNO}', '4', '{TASK_ID}', concat('old-', toString(number))) "
            f"FROM numbers({ROWS_PER_DAY})")
        client.command(
            f"INSERT INTO {database}.otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, "
            f"Duration, StatusCode) SELECT {ts}, hex(number), hex(number), 'run/tasks.ping', 'Consumer', "
            f"'omegaml-worker', 1000000, 'Ok' FROM numbers({ROWS_PER_DAY})")
        client.command(
            f"INSERT INTO {database}.otel_metrics_gauge (TimeUnix, StartTimeUnix, ServiceName, MetricName, Value) "
            f"SELECT {ts}, {ts}, 'omegaml-worker', 'system.cpu.utilization', 0.5 FROM numbers({ROWS_PER_DAY})")


def dataset_row(ns: int, body: str, **attrs) -> tuple:
    return row(schema.LOGS, Timestamp=ns, ServiceName="omegaml-worker", SeverityText="INFO", SeverityNumber=9,
               Body=body, ScopeName=attrs.pop("scope", "simple"),
               LogAttributes={DATASET: LOG_DATASET, LEVELNO: "4", **attrs})


def main() -> dict:
    store = default_store()
    assert isinstance(store, ClickHouseStore), store
    store.apply_schema()
    client = store._conn()
    stop_merges(client, store.database)
    now = time.time_ns()
    today = now // S - now // S % 86400
    history(client, store.database, [today - d * 86400 for d in range(1, DAYS + 1)])
    old_reset = now - 60 * HOUR  # two and a half days ago: found by the third search back from now
    store.write(schema.LOGS, [dataset_row(old_reset, "log init", scope=SYSTEM_LOGGER, **{LOG_RESET: "true"})])
    captures = {id(store): Capture(store)}
    shapes: dict[str, list] = {}
    checks: dict[str, object] = {}

    def shape(name: str, fn: Callable[[], object], on: ClickHouseStore = store):
        if id(on) not in captures:
            captures[id(on)] = Capture(on)
        result, sent = captures[id(on)].run(fn)
        client = on._conn()
        shapes[name] = [{"sql": sql, "params": {k: repr(v) for k, v in params.items()},
                         "reads": explain(client, sql, params),
                         "same_rows_without_key_bounds": same_rows_without_key_bounds(client, sql, params)}
                        for sql, params in sent]
        return result

    dataset = om.logger.dataset
    df = shape("logger rows, reset 60 h ago (first search)", lambda: dataset.get())
    checks["rows since the old reset, and a count without the readers"] = [len(df), client.query(
        f"SELECT count() FROM {store.database}.otel_logs WHERE Timestamp >= fromUnixTimestamp64Nano({old_reset}) "
        f"AND LogAttributes['{DATASET}'] = '{LOG_DATASET}'").result_rows[0][0]]
    df = shape("time range in the window", lambda: dataset.get(since=pd.Timestamp(now - 50 * HOUR),
                                                                     end=pd.Timestamp(now - 40 * HOUR)))
    checks["rows in the time range"] = len(df)
    om.logger.reset()
    om.logger.info("hello")
    df = shape("logger rows, after a reset (later search)", lambda: dataset.get(logger="simple"))
    checks["messages after the reset"] = list(df.msg)
    store.write(schema.LOGS, [dataset_row(time.time_ns(), f"task line {i}", **{TASK_ID: "task-now"}) for i in range(3)])
    df = shape("one task's records by id", lambda: dataset.get(taskid="task-now"))
    checks["task records"] = list(df.msg)

    follow = dataset.follow(interval=0.01)
    shape("follow, first poll", lambda: next(follow))
    om.logger.info("followed")
    df = shape("follow, next poll", lambda: next(follow))
    checks["followed"] = list(df.msg)

    since, until = pd.Timestamp(now - 3 * 86400 * S), pd.Timestamp(now - 2 * 86400 * S)
    df = shape("telemetry.logs time range", lambda: om.telemetry.logs(since=since, until=until))
    checks["telemetry.logs rows"] = len(df)
    shape("telemetry.spans time range", lambda: om.telemetry.spans(since=since, until=until))
    shape("telemetry.metrics time range", lambda: om.telemetry.metrics(since=since, until=until))

    # a record at x.999999999 s (TimestampTime x), read with bounds at and around it
    edge = (today - 5 * 86400 + 7) * S + S - 1
    store.write(schema.LOGS, [row(schema.LOGS, Timestamp=edge, Body="edge", ScopeName="edge")])
    checks["edge"] = {label: len(store.logs(conds=[Cond("ScopeName", "eq", "edge")], since=lo, until=hi))
                      for label, lo, hi in (("at", edge, edge), ("from x.5", edge - S // 2, None),
                                            ("until x+1", None, edge + 1), ("from x+1", edge + 1, None),
                                            ("until x.5", None, edge - S // 2))}

    exp = om.runtime.experiment("pruned", provider="simple")
    with exp:
        exp.log_metric("acc", 0.5, step=1)
        exp.log_metric("acc", 0.7, step=2)
    df = shape("one run's exp.data()", lambda: exp.data(run=1))
    checks["exp.data rows"] = sorted(df.event)

    for database, newer in (("dash", False), ("newer", True)):
        label = " (v0.151+ logs layout)" if newer else ""
        dash = grafana_store(store.path, database, newer)
        shape(f"telemetry.logs time range{label}", lambda: om.telemetry.logs(
            since=pd.Timestamp(gp.T0_NS - HOUR), until=pd.Timestamp(gp.T0_NS + HOUR), store=dash), dash)
        panels, results = dashboard_reads(dash)
        shapes[f"dashboard panels{label}"] = panels
        checks[f"panels without rows{label}"] = {k: v for k, v in results.items() if not (isinstance(v, int) and v > 0)}
    return {"shapes": shapes, "checks": checks}


def grafana_store(path: str, database: str, newer_layout: bool) -> ClickHouseStore:
    """A database holding the Grafana scenario on its day and DAYS more days of rows around it. ``newer_layout``:
    otel_logs as the exporter creates it since v0.151: no TimestampTime, partitioned and sorted on Timestamp."""
    store = ClickHouseStore(f"chdb://{path}?database={database}")
    store.apply_schema()
    client = store._conn()
    if newer_layout:
        client.command(f"CREATE TABLE {database}.logs_v151 AS {database}.otel_logs ENGINE = MergeTree "
                       "PARTITION BY toDate(Timestamp) PRIMARY KEY (toStartOfFiveMinutes(Timestamp), ServiceName) "
                       "ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)")
        client.command(f"ALTER TABLE {database}.logs_v151 DROP COLUMN TimestampTime")
        client.command(f"DROP TABLE {database}.otel_logs")
        client.command(f"RENAME TABLE {database}.logs_v151 TO {database}.otel_logs")
        store.close()
        client = store._conn()
    stop_merges(client, database)
    t0_day = gp.T0_S - gp.T0_S % 86400
    history(client, database, [t0_day + d * 86400 for d in range(-DAYS // 2, DAYS // 2 + 1) if d])
    for table, rows in gp.scenario().items():
        store.write(table, rows)
    return store


def dashboard_reads(store: ClickHouseStore) -> tuple[list[dict], dict]:
    """Every variable's and panel's query (macros expanded, as tests/test_grafana.py runs them), with its reads."""
    client = store._conn()
    client.command(f"USE {store.database}")  # Grafana's datasource has a default database: bare table names
    panels: list[dict] = []

    def panel_rows(sql: str) -> list:
        panels.append({"sql": sql, "params": {}, "reads": explain(client, sql),
                       "same_rows_without_key_bounds": same_rows_without_key_bounds(client, sql, None)})
        return client.query(sql).result_rows

    return panels, gp.query_dashboards(panel_rows)


if __name__ == "__main__":
    print(json.dumps(main(), indent=1, default=str))

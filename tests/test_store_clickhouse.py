"""ClickHouseStore on the embedded ClickHouse engine (chdb) with the project's DDL, against SqliteStore.

chdb opens one folder per process, so the whole module shares one chdb folder and empties the tables per test.
Documented differences from SqliteStore: rows with the same timestamp have no insertion order in ClickHouse
(SQLite breaks ties by rowid); ``DateTime`` (seconds) metric tables, where a layout has them, keep seconds only.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from omegaml_otel._internal.stores import Cond, MapKey, StoreError, open_store, schema
from omegaml_otel._internal.stores.clickhouse import ClickHouseStore, mask_url
from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl
from omegaml_otel._internal.stores.clickhouse_frames import ARROW_SETTINGS, arrow_to_frame, to_frame, uses_arrow
from omegaml_otel._internal.stores.plan import QueryPlan
from omegaml_otel._internal.stores.sqlite import SqliteStore
from schema_rows import row

T0 = datetime(2026, 1, 2, 3, 4, 5)
T0_NS = int(pd.Timestamp(T0).value)
#: columns the exporters write besides the logical schema (both collectors insert exemplars)
_EXTRA = {schema.LOGS: {"TimestampTime"}, schema.TRACES: set(), schema.SUMMARY: set()}
_EXEMPLARS = {"Exemplars.FilteredAttributes", "Exemplars.TimeUnix", "Exemplars.Value", "Exemplars.SpanId",
              "Exemplars.TraceId"}


@pytest.fixture(scope="session")
def ch_path(tmp_path_factory):
    return tmp_path_factory.mktemp("chdb") / "db"


@pytest.fixture(scope="session")
def ch_session(ch_path):
    store = open_store(f"chdb://{ch_path}")
    assert isinstance(store, ClickHouseStore)
    store.apply_schema()
    yield store
    store.close()


@pytest.fixture
def ch(ch_session):
    ch_session.truncate()
    return ch_session


@pytest.fixture
def lite(tmp_path):
    store = SqliteStore(tmp_path / "t.sqlite")
    yield store
    store.close()


def both(ch, lite, table, rows):
    ch.write(table, rows)
    lite.write(table, rows)


def assert_same(ch, lite, table, **kw):
    a, b = ch.query(table, **kw), lite.query(table, **kw)
    pd.testing.assert_frame_equal(a, b, check_dtype=True)
    return a


def log_rows():
    return [
        row(schema.LOGS, Timestamp=T0_NS + i * 1_000_000_001, TraceId=f"{i:032x}", SpanId=f"{i:016x}",
            TraceFlags=1, SeverityText=lvl, SeverityNumber=num, ServiceName="svc", Body=body,
            ResourceAttributes={"host.name": "h1", "service.name": "svc"}, ScopeName=scope,
            LogAttributes={"dataset": "ds", "n": str(i), **({"extra": "x"} if i % 2 else {})})
        for i, (lvl, num, scope, body) in enumerate([
            ("INFO", 9, "app", "hello world"), ("ERROR", 17, "app", "bad thing"),
            ("DEBUG", 5, "lib.sub", "x' OR '1'='1"), ("WARN", 13, "lib", "héllo ünïcode"),
            ("INFO", 9, "system", "log init")])
    ]


# -- DDL ------------------------------------------------------------------------------------------------------------
def test_render_ddl_placeholders():
    plain = render_ddl()
    assert plain[0] == "CREATE DATABASE IF NOT EXISTS otel"
    assert not any("{" in s and ("{database}" in s or "{ttl_days}" in s) for s in plain)
    assert not any("TTL " in s for s in plain)
    ttl = render_ddl("telemetry", ttl_days=30)
    assert all("telemetry." in s for s in ttl[1:])
    assert sum("toIntervalDay(30)" in s for s in ttl) == 8  # every table but omtel_schema_version
    with pytest.raises(ValueError):
        render_ddl("otel; DROP TABLE x")
    with pytest.raises(ValueError):
        render_ddl(ttl_days=-1)


def test_ddl_has_exactly_the_schema_columns(ch_session):
    layout = ch_session.tables()
    assert set(layout) == set(schema.TABLES)
    for table in schema.TABLES:
        extra = _EXTRA.get(table, _EXEMPLARS)
        assert set(layout[table]) == set(schema.columns(table)) | extra, table
    assert layout[schema.LOGS]["Timestamp"] == "DateTime64(9)"
    for table in (schema.GAUGE, schema.SUM, schema.HISTOGRAM, schema.EXP_HISTOGRAM, schema.SUMMARY):  # rotel: ns
        assert layout[table]["TimeUnix"] == layout[table]["StartTimeUnix"] == "DateTime64(9)"
    assert layout[schema.TRACES]["Events.Timestamp"] == "Array(DateTime64(9))"
    assert layout[schema.LOGS]["LogAttributes"] == "Map(LowCardinality(String), String)"
    # applying again is harmless
    ch_session.apply_schema()


# -- round trips against SqliteStore -------------------------------------------------------------------------------
def test_logs_round_trip(ch, lite):
    rows = log_rows()
    both(ch, lite, schema.LOGS, rows)
    df = assert_same(ch, lite, schema.LOGS)
    assert len(df) == 5 and df["LogAttributes"][0] == {"dataset": "ds", "n": "0"}
    assert_same(ch, lite, schema.LOGS, descending=True, limit=2)
    assert_same(ch, lite, schema.LOGS, since=T0 + timedelta(seconds=1), until=T0_NS + 3_000_000_003)
    assert_same(ch, lite, schema.LOGS, columns=["Body", MapKey("LogAttributes", "extra"),
                                                MapKey("ResourceAttributes", "host.name")])


def test_python_strings_are_str_objects_on_both_stores(ch, lite):
    both(ch, lite, schema.LOGS, log_rows())
    cols = ["Timestamp", "SeverityNumber", "Body", MapKey("LogAttributes", "extra"), "LogAttributes"]
    df = assert_same(ch, lite, schema.LOGS, columns=cols, python_strings=True)
    assert df["Body"].dtype == object and df["LogAttributes['extra']"].dtype == object
    assert list(df["LogAttributes['extra']"]) == [None, "x", None, "x", None]  # missing is None, not NaN
    assert str(df["Timestamp"].dtype) == "datetime64[ns]" and df["SeverityNumber"].dtype == "int64"
    assert df["Body"].tolist() == lite.query(schema.LOGS, columns=cols)["Body"].tolist()  # same values as ever
    none = assert_same(ch, lite, schema.LOGS, columns=cols[:4], python_strings=True,
                       conds=[Cond("Body", "eq", "no such body")])
    assert len(none) == 0


def test_traces_round_trip(ch, lite):
    rows = [row(schema.TRACES, Timestamp=T0_NS + i, TraceId=f"{i:032x}", SpanId=f"{i:016x}", ParentSpanId="",
                SpanName="run/task", SpanKind="Consumer", ServiceName="worker", Duration=1_500_000 * (i + 1),
                StatusCode="Error" if i else "Ok", SpanAttributes={"celery.task_id": f"t{i}"},
                Events_Timestamp=[T0_NS + i + 10, T0_NS + i + 20], Events_Name=["exception", "retry"],
                Events_Attributes=[{"exception.type": "ValueError"}, {}],
                Links_TraceId=[f"{9:032x}"], Links_SpanId=[f"{9:016x}"], Links_TraceState=[""],
                Links_Attributes=[{"k": "v"}])
            for i in range(3)]
    both(ch, lite, schema.TRACES, rows)
    df = assert_same(ch, lite, schema.TRACES)
    assert df["Events.Timestamp"][1] == [T0_NS + 11, T0_NS + 21]
    assert df["Events.Attributes"][0] == [{"exception.type": "ValueError"}, {}]
    assert_same(ch, lite, schema.TRACES, conds=[Cond("Duration", "gt", 2_000_000)])


def metric_rows(table, **extra):
    return [row(table, ResourceAttributes={"service.name": "w"}, ServiceName="w", MetricName=name,
                MetricUnit="%", Attributes={"run": "r1", "step": str(i)}, StartTimeUnix=T0_NS,
                TimeUnix=T0_NS + (i + 1) * 1_000_000_007, Value=float(i) + 0.5, **extra)
            for i, name in enumerate(["cpu", "memory", "cpu"])]


def test_gauge_and_sum_round_trip(ch, lite):
    both(ch, lite, schema.GAUGE, metric_rows(schema.GAUGE, Flags=0))
    both(ch, lite, schema.SUM, metric_rows(schema.SUM, AggregationTemporality=2, IsMonotonic=1))
    g = assert_same(ch, lite, schema.GAUGE)
    s = assert_same(ch, lite, schema.SUM)
    assert list(s["IsMonotonic"]) == [1, 1, 1] and list(g["Value"]) == [0.5, 1.5, 2.5]
    assert_same(ch, lite, schema.GAUGE, conds=[Cond("MetricName", "eq", "cpu"), Cond("Attributes", "eq", "2",
                                                                                     key="step")])
    pd.testing.assert_frame_equal(ch.metrics(), lite.metrics())
    assert len(ch.metrics()) == 6


def test_histogram_round_trip(ch, lite):
    rows = [row(schema.HISTOGRAM, MetricName="duration", StartTimeUnix=T0_NS, TimeUnix=T0_NS + 5, Count=3,
                Sum=7.5, BucketCounts=[1, 2, 0], ExplicitBounds=[1.0, 5.0], Min=0.5, Max=4.0,
                AggregationTemporality=2)]
    both(ch, lite, schema.HISTOGRAM, rows)
    df = assert_same(ch, lite, schema.HISTOGRAM)
    assert df["BucketCounts"][0] == [1, 2, 0]


def test_exponential_histogram_and_summary_round_trip(ch, lite):
    exp = [row(schema.EXP_HISTOGRAM, MetricName="latency", StartTimeUnix=T0_NS, TimeUnix=T0_NS + 7, Count=5, Sum=9.5,
               Scale=3, ZeroCount=1, PositiveOffset=-2, PositiveBucketCounts=[1, 0, 3], NegativeOffset=0,
               NegativeBucketCounts=[], Min=0.0, Max=4.5, Flags=0, AggregationTemporality=2)]
    summary = [row(schema.SUMMARY, MetricName="rpc.duration", StartTimeUnix=T0_NS, TimeUnix=T0_NS + 9, Count=4,
                   Sum=2.5, ValueAtQuantiles_Quantile=[0.5, 0.99], ValueAtQuantiles_Value=[0.4, 1.2])]
    both(ch, lite, schema.EXP_HISTOGRAM, exp)
    both(ch, lite, schema.SUMMARY, summary)
    e = assert_same(ch, lite, schema.EXP_HISTOGRAM)
    s = assert_same(ch, lite, schema.SUMMARY)
    assert (e["Scale"][0], e["PositiveOffset"][0], e["PositiveBucketCounts"][0]) == (3, -2, [1, 0, 3])
    assert s["ValueAtQuantiles.Quantile"][0] == [0.5, 0.99] and s["ValueAtQuantiles.Value"][0] == [0.4, 1.2]


def test_ddl_takes_the_exporters_own_inserts(ch):
    """The column lists otelcol-contrib's clickhouseexporter names in its exponential-histogram and summary INSERTs
    (internal/sqltemplates/metrics_{exp_histogram,summary}_insert.sql, the same from v0.135 on), written by the
    engine: before version 2 of the DDL these tables did not exist and one such point failed a whole export."""
    common = ("ResourceAttributes, ResourceSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes, "
              "ScopeDroppedAttrCount, ScopeSchemaUrl, ServiceName, MetricName, MetricDescription, MetricUnit, "
              "Attributes, StartTimeUnix, TimeUnix, Count, Sum")
    head = ("map('service.name', 'gw'), '', 'scope', '1', map(), 0, '', 'gw', 'm', 'd', 'u', map('k', 'v'), "
            "'2026-01-02 03:04:05.000000001', '2026-01-02 03:04:06.000000002', 3, 1.5")
    client = ch._conn()
    client.command(f"INSERT INTO otel.{schema.EXP_HISTOGRAM} ({common}, Scale, ZeroCount, PositiveOffset, "
                   "PositiveBucketCounts, NegativeOffset, NegativeBucketCounts, Exemplars.FilteredAttributes, "
                   "Exemplars.TimeUnix, Exemplars.Value, Exemplars.SpanId, Exemplars.TraceId, Flags, Min, Max, "
                   f"AggregationTemporality) VALUES ({head}, 2, 0, 1, [1, 2], 0, [], [map('a', 'b')], "
                   "['2026-01-02 03:04:06'], [0.5], ['01'], ['02'], 0, 0.5, 1.0, 2)")
    client.command(f"INSERT INTO otel.{schema.SUMMARY} ({common}, ValueAtQuantiles.Quantile, "
                   f"ValueAtQuantiles.Value, Flags) VALUES ({head}, [0.5, 0.9], [0.4, 0.8], 0)")
    e = ch.query(schema.EXP_HISTOGRAM)
    s = ch.query(schema.SUMMARY)
    assert list(e["PositiveBucketCounts"]) == [[1, 2]] and list(e["TimeUnix"]) == [pd.Timestamp(T0_NS + 1_000_000_002)]
    assert list(s["ValueAtQuantiles.Value"]) == [[0.4, 0.8]] and list(s["ServiceName"]) == ["gw"]


def test_empty_results_have_the_same_shape(ch, lite):
    a = ch.query(schema.LOGS, columns=["Timestamp", "Body", MapKey("LogAttributes", "k")])
    b = lite.query(schema.LOGS, columns=["Timestamp", "Body", MapKey("LogAttributes", "k")])
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == 0
    pd.testing.assert_frame_equal(a, b)
    assert_same(ch, lite, schema.LOGS, limit=0)  # map columns too


# -- every operator ------------------------------------------------------------------------------------------------
CONDS = [
    Cond("SeverityText", "eq", "INFO"), Cond("SeverityText", "ne", "INFO"),
    Cond("SeverityNumber", "lt", 9), Cond("SeverityNumber", "lte", 9), Cond("SeverityNumber", "gt", 9),
    Cond("SeverityNumber", "gte", 13), Cond("SeverityNumber", "in", [5, 17]), Cond("SeverityText", "in", []),
    Cond("ScopeName", "in", ["app", "system"]), Cond("Body", "contains", "llo"), Cond("Body", "contains", "'"),
    Cond("ScopeName", "startswith", "lib"), Cond("ScopeName", "startswith", "li%"),
    Cond("Body", "contains", "%"), Cond("Body", "contains", "_"),
    Cond("Timestamp", "gt", T0 + timedelta(seconds=2)), Cond("Timestamp", "eq", T0_NS + 1_000_000_001),
    Cond("Timestamp", "in", [T0, T0_NS + 4_000_000_004]), Cond("Timestamp", "lte", T0),
    Cond("LogAttributes", "eq", "x", key="extra"), Cond("LogAttributes", "ne", "x", key="extra"),
    Cond("LogAttributes", "lt", "2", key="n"), Cond("LogAttributes", "gte", "2", key="n"),
    Cond("LogAttributes", "in", ["1", 3], key="n"), Cond("LogAttributes", "contains", "s", key="dataset"),
    Cond("LogAttributes", "startswith", "d", key="dataset"), Cond("LogAttributes", "eq", "", key="missing"),
    Cond("LogAttributes", "ne", "zz", key="missing"), Cond("ResourceAttributes", "eq", "h1", key="host.name"),
    Cond("LogAttributes", "eq", "ds", key="dataset"),
]


@pytest.mark.parametrize("cond", CONDS, ids=lambda c: f"{c.label}-{c.op}-{c.value}")
def test_every_condition_matches_sqlite(ch, lite, cond):
    both(ch, lite, schema.LOGS, log_rows())
    cols = ["Timestamp", "Body", MapKey("LogAttributes", "n"), MapKey("LogAttributes", "missing")]
    assert_same(ch, lite, schema.LOGS, conds=[cond], columns=cols)


def test_conditions_combine_and_map_key_columns(ch, lite):
    both(ch, lite, schema.LOGS, log_rows())
    df = assert_same(ch, lite, schema.LOGS, conds=[Cond("ServiceName", "eq", "svc"),
                                                   Cond("LogAttributes", "eq", "x", key="extra")],
                     columns=[MapKey("LogAttributes", "n"), "SeverityText"])
    assert list(df.columns) == ["LogAttributes['n']", "SeverityText"]
    assert list(df["LogAttributes['n']"]) == ["1", "3"]


def test_exists_matches_sqlite(ch, lite):
    both(ch, lite, schema.LOGS, log_rows())
    for conds, expected in (([Cond("ScopeName", "eq", "system"), Cond("LogAttributes", "eq", "ds", key="dataset")],
                              True), ([Cond("LogAttributes", "eq", "x", key="extra")], True),
                            ([Cond("ScopeName", "eq", "nowhere")], False), ([], True)):
        assert ch.exists(schema.LOGS, conds=conds) is lite.exists(schema.LOGS, conds=conds) is expected, conds
    assert not ch.exists(schema.TRACES) and not lite.exists(schema.TRACES)


def test_rows_match_sqlite(ch, lite):
    """Store.rows: a writer's small lookup as plain tuples (no DataFrame), newest first with ``descending``."""
    both(ch, lite, schema.LOGS, log_rows())
    kw = dict(conds=[Cond("LogAttributes", "eq", "x", key="extra")], columns=[MapKey("LogAttributes", "n"), "Body"])
    assert ch.rows(schema.LOGS, **kw) == lite.rows(schema.LOGS, **kw) == [("1", "bad thing"), ("3", "héllo ünïcode")]
    newest = dict(columns=[MapKey("LogAttributes", "n"), MapKey("LogAttributes", "absent")], limit=1, descending=True)
    assert ch.rows(schema.LOGS, **newest) == lite.rows(schema.LOGS, **newest) == [("4", None)]
    assert ch.rows(schema.TRACES, columns=["SpanId"]) == lite.rows(schema.TRACES, columns=["SpanId"]) == []


@pytest.mark.parametrize("value", ["x' OR '1'='1", "'; DROP TABLE otel.otel_logs; --", "\\' OR 1=1 --", "{p0:String}"])
def test_values_are_bound_parameters(ch, value):
    ch.write(schema.LOGS, log_rows())
    for cond in (Cond("SeverityText", "eq", value), Cond("LogAttributes", "eq", value, key="dataset"),
                 Cond("LogAttributes", "eq", "ds", key=value), Cond("ScopeName", "in", [value]),
                 Cond("ScopeName", "startswith", value)):
        assert len(ch.query(schema.LOGS, conds=[cond])) == 0, cond
    assert len(ch.query(schema.LOGS, columns=[MapKey("LogAttributes", value)])) == 5
    # the injection-looking body is found as a literal value, and the table survived
    assert list(ch.query(schema.LOGS, conds=[Cond("Body", "eq", "x' OR '1'='1")])["ScopeName"]) == ["lib.sub"]
    assert len(ch.query(schema.LOGS)) == 5


def test_bad_columns_and_tables_are_clear_errors(ch):
    with pytest.raises(ValueError, match="no column"):
        ch.query(schema.LOGS, conds=[Cond("Nope", "eq", 1)])
    with pytest.raises(ValueError, match="not an attribute map"):
        ch.query(schema.LOGS, columns=[MapKey("Body", "x")])
    with pytest.raises(ValueError, match="unknown table"):
        ch.query("users")


def test_urls_mask_passwords_and_missing_tables_name_the_fix(ch_session):
    assert mask_url("clickhouse://bob:s3cret@db:8123/otel") == "clickhouse://bob:***@db:8123/otel"
    store = open_store("clickhouses://bob:s3cret@127.0.0.1:1/otel")
    assert "s3cret" not in store.url and store._secure and store.database == "otel"
    with pytest.raises(StoreError) as err:
        store.logs()
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    # same chdb folder as the session (one folder per process), another database without tables
    other = ClickHouseStore(f"chdb://{ch_session.path}?database=empty_db", create=False)
    with pytest.raises(StoreError, match="omtel schema apply"):
        other.logs()


def test_layout_probe_reads_datetime_seconds_and_no_timestamptime(ch_session):
    """The v0.160-era layout: metric times as DateTime (seconds); logs without TimestampTime or EventName."""
    client = ch_session._conn()
    client.command("CREATE DATABASE IF NOT EXISTS newlayout")
    for stmt in render_ddl("newlayout"):
        stmt = stmt.replace("StartTimeUnix DateTime64(9)", "StartTimeUnix DateTime") \
            .replace("    TimeUnix DateTime64(9)", "    TimeUnix DateTime")
        stmt = stmt.replace("TimestampTime DateTime DEFAULT toDateTime(Timestamp),", "") \
            .replace("EventName String CODEC(ZSTD(1)),", "")
        stmt = stmt.replace("toDate(TimestampTime)", "toDate(Timestamp)") \
            .replace("PRIMARY KEY (ServiceName, TimestampTime)", "") \
            .replace("ORDER BY (ServiceName, TimestampTime, Timestamp)",
                     "ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)") \
            .replace("ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))",
                     "ORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)")
        client.command(stmt)
    store = ClickHouseStore(f"chdb://{ch_session.path}?database=newlayout")
    layout = store.tables()
    assert layout[schema.GAUGE]["TimeUnix"] == "DateTime" and "TimestampTime" not in layout[schema.LOGS]
    assert "EventName" not in layout[schema.LOGS]
    store.write(schema.GAUGE, metric_rows(schema.GAUGE))
    store.write(schema.LOGS, log_rows())
    df = store.metrics(since=T0 + timedelta(seconds=2))
    assert list(df["TimeUnix"]) == [pd.Timestamp(T0 + timedelta(seconds=2)), pd.Timestamp(T0 + timedelta(seconds=3))]
    assert str(df["TimeUnix"].dtype) == "datetime64[ns]"
    logs = store.logs()
    assert len(logs) == 5 and set(logs["EventName"]) == {""}


def test_embedded_engine_upgrades_an_older_database_itself(ch_session):
    """chdb is embedded like SQLite, and like SQLite it brings its own tables up to date when opened to write: a
    database of schema version 1 gets the exponential-histogram and summary tables (a server waits for
    ``omtel schema apply``)."""
    client = ch_session._conn()
    client.command("CREATE DATABASE IF NOT EXISTS v1auto")
    for stmt in render_ddl("v1auto", path=Path(__file__).parent / "support" / "ddl_schema_v1.sql")[1:]:
        client.command(stmt)
    store = ClickHouseStore(f"chdb://{ch_session.path}?database=v1auto")
    assert set(store.tables()) == set(schema.TABLES) and store.schema_status().up_to_date
    store.write(schema.EXP_HISTOGRAM, [row(schema.EXP_HISTOGRAM, MetricName="m", TimeUnix=T0_NS, Count=1)])
    assert list(store.query(schema.EXP_HISTOGRAM)["Count"]) == [1]


# -- the compat reader on ClickHouse ---------------------------------------------------------------------------------
def test_log_dataset_on_clickhouse_equals_sqlite(ch, om):
    from omegaml_otel._internal.compat.logger import LogDataset
    from omegaml_otel._internal.stores import default_store

    om.logger.reset()
    om.logger.setLevel("DEBUG")
    om.logger.info("first message")
    om.logger.getLogger("mylogger").warning("named logger's message")
    om.logger.debug({"a": 1})
    om.logger.error("x' OR '1'='1")
    lite = default_store()
    om.logger.dataset.get()  # flushes
    with sqlite3.connect(lite.path) as conn:
        rows = conn.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in schema.columns(schema.LOGS))} "
                            "FROM otel_logs").fetchall()
    ch.write(schema.LOGS, rows)
    expected = LogDataset(store=lite).get()
    got = LogDataset(store=ch).get()
    assert len(expected) >= 5  # log init + 4 messages
    pd.testing.assert_frame_equal(got, expected)
    for kw in ({"level": "ERROR"}, {"logger": "mylogger"}, {"msg__contains": "message"}, {"extra": True}):
        pd.testing.assert_frame_equal(LogDataset(store=ch).get(**kw), LogDataset(store=lite).get(**kw))


# -- omtel schema apply ------------------------------------------------------------------------------------------------
def test_cli_schema_apply(tmp_path):
    # another process, another folder: this process keeps its own chdb folder open
    url = f"chdb://{tmp_path / 'cli-db'}"
    run = subprocess.run([sys.executable, "-m", "omegaml_otel.cli", "schema", "apply", "--store", url,
                          "--database", "telemetry", "--ttl-days", "7"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "telemetry" in run.stdout and "otel_logs" in run.stdout
    check = subprocess.run([sys.executable, "-c", (
        "import clickhouse_connect, sys; c = clickhouse_connect.get_client(dsn=sys.argv[1]); "
        "print(c.command('SHOW CREATE TABLE telemetry.otel_logs'))"), url], capture_output=True, text=True,
        timeout=60)
    assert check.returncode == 0, check.stderr
    assert "toIntervalDay(7)" in check.stdout
    bad = subprocess.run([sys.executable, "-m", "omegaml_otel.cli", "schema", "apply", "--store",
                          "clickhouse://u:pw123@127.0.0.1:1/otel"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "pw123" not in bad.stderr and "omtel:" in bad.stderr


@pytest.mark.parametrize("python_strings", [False, True])
def test_arrow_reads_give_the_frames_of_query_df(ch, python_strings):
    """The Arrow read (every plan without array columns) and ``query_df`` (array columns) give the same frame, dtype
    for dtype: maps, attribute keys that are missing, dictionary-encoded strings, times."""
    ch.write(schema.LOGS, [row(schema.LOGS, Timestamp=T0_NS + i, SeverityText=level, ScopeName="app", Body=f"m{i}",
                               LogAttributes=attrs, ResourceAttributes={"host.name": "h"})
                           for i, (level, attrs) in enumerate([("INFO", {"k": "1"}), ("ERROR", {}),
                                                               ("INFO", {"k": ""})])])
    for columns in (None, ["Timestamp", "SeverityText", MapKey("LogAttributes", "k"),
                           MapKey("LogAttributes", "absent"), "SeverityNumber"]):
        plan = QueryPlan.build(schema.LOGS, columns=columns)
        assert uses_arrow(plan)
        sql, params = ch._render(plan)
        client = ch._conn()
        table = client.query_arrow(sql, parameters=params, settings=ARROW_SETTINGS)
        arrow = arrow_to_frame(table, plan, python_strings)
        native = to_frame(client.query_df(sql, parameters=params), plan, python_strings)
        pd.testing.assert_frame_equal(arrow, native)
        assert len(arrow) == 3
    assert not uses_arrow(QueryPlan.build(schema.TRACES))  # array columns: query_df

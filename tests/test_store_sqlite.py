"""SqliteStore: the embedded default store, in the collector ClickHouse exporter's schema."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from omegaml_otel._internal.capture.tracking import event_conds
from omegaml_otel._internal.stores import Cond, MapKey, StoreError, open_store, schema
from omegaml_otel._internal.stores.plan import QueryPlan
from omegaml_otel._internal.stores.sqlite import CACHE_KIB, SCHEMA_VERSION, SqliteStore, _SqliteDialect
from omegaml_otel.conventions import RUN, Event
from schema_rows import row

T0 = datetime(2026, 1, 2, 3, 4, 5)


def ns(dt: datetime) -> int:
    return int(pd.Timestamp(dt).value)


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "store.sqlite")
    yield s
    s.close()


@pytest.fixture
def logs(store):
    """Five log rows, one second apart, with attributes to filter on."""
    rows = [
        row(schema.LOGS, Timestamp=ns(T0 + timedelta(seconds=i)), SeverityText=level, SeverityNumber=number,
            ScopeName=scope, Body=body, TraceId=f"{i:032x}",
            LogAttributes={"celery.task_id": task, "n": str(i)},
            ResourceAttributes={"host.name": "h1" if i < 3 else "h2", "service.name": "svc"})
        for i, (level, number, scope, body, task) in enumerate([
            ("INFO", 9, "celery", "hello world", "t-1"),
            ("ERROR", 17, "celery", "100% done_now", "t-1"),
            ("DEBUG", 5, "root", "abc_def", "t-2"),
            ("WARN", 13, "omegaml", "x' OR '1'='1", "t-3"),
            ("INFO", 9, "root", "ünïcødé ✓", "t'3"),
        ])
    ]
    store.write(schema.LOGS, rows)
    return store


# -- schema ---------------------------------------------------------------------------------------------------------
def test_schema_columns_exact(store):
    assert store.schema_version() == SCHEMA_VERSION == 4
    conn = sqlite3.connect(store.path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert set(schema.TABLES) <= tables
        for table in schema.TABLES:
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            assert [r[1] for r in info] == schema.columns(table), table
        # the exporter's names, as ClickHouse users know them
        assert schema.columns(schema.LOGS)[:8] == ["Timestamp", "TraceId", "SpanId", "TraceFlags", "SeverityText",
                                                  "SeverityNumber", "ServiceName", "Body"]
        assert "Events.Timestamp" in schema.columns(schema.TRACES)
        assert {"MetricName", "Value", "TimeUnix"} <= set(schema.columns(schema.GAUGE))
        assert {"AggregationTemporality", "IsMonotonic"} <= set(schema.columns(schema.SUM))
    finally:
        conn.close()


def test_wal_mode(store):
    store.schema_version()
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        conn.close()


def test_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "newer.sqlite"
    first = SqliteStore(path)
    assert first.schema_version() == SCHEMA_VERSION
    first.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO omtel_schema VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    newer = SqliteStore(path)
    with pytest.raises(StoreError, match="upgrade") as info:
        newer.schema_version()
    assert str(SCHEMA_VERSION + 1) in str(info.value) and str(path) in str(info.value)
    with pytest.raises(StoreError, match="upgrade"):
        newer.write(schema.LOGS, [row(schema.LOGS, Body="x")])
    # nothing was changed in the newer store
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM omtel_schema").fetchone()[0] == SCHEMA_VERSION + 1
    assert conn.execute("SELECT count(*) FROM otel_logs").fetchone()[0] == 0
    conn.close()


def test_reopen_keeps_data_and_version(tmp_path):
    path = tmp_path / "again.sqlite"
    a = SqliteStore(path)
    a.write(schema.LOGS, [row(schema.LOGS, Body="kept")])
    a.close()
    b = SqliteStore(path)
    assert b.schema_version() == SCHEMA_VERSION
    assert list(b.logs().Body) == ["kept"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM omtel_schema").fetchone()[0] == 1
    conn.close()


def test_migration_from_version_1(tmp_path):
    """A store written by the first release (version 1: TraceId index on otel_logs) is migrated in place."""
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    cols = ", ".join(f'"{c}"' for c in schema.columns(schema.LOGS))
    conn.execute(f"CREATE TABLE otel_logs ({cols})")
    conn.execute('CREATE INDEX otel_logs_idx0 ON otel_logs ("Timestamp")')
    conn.execute('CREATE INDEX otel_logs_idx1 ON otel_logs ("TraceId")')
    conn.execute('CREATE INDEX otel_logs_idx2 ON otel_logs ("ScopeName", "Timestamp")')
    conn.execute("CREATE TABLE omtel_schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO omtel_schema VALUES (1)")
    conn.execute(f"INSERT INTO otel_logs VALUES ({', '.join('?' * len(schema.columns(schema.LOGS)))})",
                 row(schema.LOGS, Body="from v1"))
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert list(store.logs().Body) == ["from v1"]
    conn = sqlite3.connect(path)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index' "
                                          "AND tbl_name='otel_logs'")}
    conn.close()
    assert indexes == {"otel_logs_idx0", "otel_logs_scope_ts", "otel_logs_experiment_ts"}


# -- write and query ----------------------------------------------------------------------------------------------
def test_round_trip_types(logs):
    df = logs.logs()
    assert list(df.columns) == schema.columns(schema.LOGS)
    assert len(df) == 5
    assert pd.api.types.is_datetime64_any_dtype(df.Timestamp)
    assert df.Timestamp[0] == pd.Timestamp(T0)
    assert df.LogAttributes[0] == {"celery.task_id": "t-1", "n": "0"}
    assert df.ResourceAttributes[3]["host.name"] == "h2"
    assert df.ScopeAttributes[0] == {}
    assert list(df.SeverityNumber) == [9, 17, 5, 13, 9]
    assert df.Body[4] == "ünïcødé ✓"
    assert df.TraceId[1] == f"{1:032x}"


def test_round_trip_traces_lists(store):
    store.write(schema.TRACES, [row(schema.TRACES, Timestamp=ns(T0), SpanName="run/x", Duration=123,
                                    Events_Timestamp=[1, 2], Events_Name=["a", "b"],
                                    SpanAttributes={"k": "v"})])
    df = store.spans()
    assert df["Events.Name"][0] == ["a", "b"]
    assert df["Events.Timestamp"][0] == [1, 2]
    assert df["Links.TraceId"][0] == []
    assert df.Duration[0] == 123 and df.SpanAttributes[0] == {"k": "v"}


def test_cond_ops(logs):
    def bodies(*conds, **kw):
        return list(logs.logs(conds=list(conds), **kw).Body)

    assert bodies(Cond("SeverityText", "eq", "INFO")) == ["hello world", "ünïcødé ✓"]
    assert bodies(Cond("SeverityText", "ne", "INFO")) == ["100% done_now", "abc_def", "x' OR '1'='1"]
    assert bodies(Cond("SeverityNumber", "gt", 9)) == ["100% done_now", "x' OR '1'='1"]
    assert bodies(Cond("SeverityNumber", "gte", 13)) == ["100% done_now", "x' OR '1'='1"]
    assert bodies(Cond("SeverityNumber", "lt", 9)) == ["abc_def"]
    assert bodies(Cond("SeverityNumber", "lte", 9)) == ["hello world", "abc_def", "ünïcødé ✓"]
    assert bodies(Cond("ScopeName", "in", ["root", "omegaml"])) == ["abc_def", "x' OR '1'='1", "ünïcødé ✓"]
    assert bodies(Cond("ScopeName", "in", [])) == []
    assert bodies(Cond("Body", "contains", "world")) == ["hello world"]
    assert bodies(Cond("Body", "startswith", "abc")) == ["abc_def"]
    # LIKE wildcards are plain characters
    assert bodies(Cond("Body", "contains", "%")) == ["100% done_now"]
    assert bodies(Cond("Body", "contains", "_")) == ["100% done_now", "abc_def"]
    assert bodies(Cond("Body", "startswith", "%")) == []
    assert bodies(Cond("Body", "startswith", "ab_")) == []
    assert bodies(Cond("Body", "contains", "ïcø")) == ["ünïcødé ✓"]
    # conditions combine with AND
    assert bodies(Cond("ScopeName", "eq", "celery"), Cond("SeverityText", "eq", "ERROR")) == ["100% done_now"]
    # time columns take datetimes or ns
    assert bodies(Cond("Timestamp", "gte", T0 + timedelta(seconds=3))) == ["x' OR '1'='1", "ünïcødé ✓"]
    assert bodies(Cond("Timestamp", "lt", ns(T0 + timedelta(seconds=1)))) == ["hello world"]
    assert bodies(Cond("Timestamp", "in", [T0, T0 + timedelta(seconds=2)])) == ["hello world", "abc_def"]


def test_map_key_filters(logs):
    def bodies(*conds):
        return list(logs.logs(conds=list(conds)).Body)

    assert bodies(Cond("LogAttributes", "eq", "t-1", key="celery.task_id")) == ["hello world", "100% done_now"]
    assert bodies(Cond("LogAttributes", "in", ["t-2", "t-3"], key="celery.task_id")) == ["abc_def",
                                                                                        "x' OR '1'='1"]
    assert bodies(Cond("LogAttributes", "ne", "t-1", key="celery.task_id")) == ["abc_def", "x' OR '1'='1",
                                                                               "ünïcødé ✓"]
    assert bodies(Cond("LogAttributes", "startswith", "t-", key="celery.task_id")) == [
        "hello world", "100% done_now", "abc_def", "x' OR '1'='1"]
    assert bodies(Cond("LogAttributes", "contains", "'", key="celery.task_id")) == ["ünïcødé ✓"]
    assert bodies(Cond("ResourceAttributes", "eq", "h2", key="host.name")) == ["x' OR '1'='1", "ünïcødé ✓"]
    # numbers are compared as the strings attribute maps hold
    assert bodies(Cond("LogAttributes", "eq", 2, key="n")) == ["abc_def"]
    assert bodies(Cond("LogAttributes", "eq", "x", key="no.such.key")) == []
    with pytest.raises(ValueError, match="not an attribute map"):
        logs.logs(conds=[Cond("Body", "eq", "x", key="k")])
    with pytest.raises(ValueError, match="quotes"):
        logs.logs(conds=[Cond("LogAttributes", "eq", "x", key='a"b')])


def test_columns_mapkey_since_until_limit(logs):
    df = logs.logs(columns=["Timestamp", "Body", MapKey("LogAttributes", "celery.task_id"),
                            MapKey("LogAttributes", "missing")])
    assert list(df.columns) == ["Timestamp", "Body", "LogAttributes['celery.task_id']", "LogAttributes['missing']"]
    assert list(df["LogAttributes['celery.task_id']"]) == ["t-1", "t-1", "t-2", "t-3", "t'3"]
    assert df["LogAttributes['missing']"].isna().all()
    assert list(logs.logs(since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3),
                          columns=["Body"]).Body) == ["100% done_now", "abc_def", "x' OR '1'='1"]
    assert list(logs.logs(since=ns(T0 + timedelta(seconds=4)), columns=["Body"]).Body) == ["ünïcødé ✓"]
    assert list(logs.logs(limit=2, columns=["Body"]).Body) == ["hello world", "100% done_now"]
    assert list(logs.logs(limit=2, descending=True, columns=["Body"]).Body) == ["ünïcødé ✓", "x' OR '1'='1"]
    empty = logs.logs(conds=[Cond("Body", "eq", "nothing")])
    assert len(empty) == 0 and list(empty.columns) == schema.columns(schema.LOGS)


def test_metrics_reads_gauge_and_sum(store):
    store.write(schema.GAUGE, [row(schema.GAUGE, MetricName="g", Value=1.5, TimeUnix=ns(T0 + timedelta(seconds=2)))])
    store.write(schema.SUM, [row(schema.SUM, MetricName="s", Value=7.0, TimeUnix=ns(T0 + timedelta(seconds=1)),
                                 IsMonotonic=1)])
    df = store.metrics()
    assert list(df.MetricName) == ["s", "g"]
    assert list(df.Value) == [7.0, 1.5]
    assert list(store.metrics(conds=[Cond("MetricName", "eq", "g")]).Value) == [1.5]


def test_unknown_table_and_column(logs):
    with pytest.raises(ValueError, match="unknown table"):
        logs.query("otel_logs; DROP TABLE otel_logs")
    with pytest.raises(ValueError, match="no column"):
        logs.logs(conds=[Cond('Body" = Body OR "1', "eq", "x")])
    with pytest.raises(ValueError, match="no column"):
        logs.logs(columns=["Body, SpanId"])
    with pytest.raises(ValueError, match="unknown filter operator"):
        Cond("Body", "like", "%")
    assert len(logs.logs()) == 5


# -- bound parameters ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["x' OR '1'='1", "' OR 1=1 --", "\"; DROP TABLE otel_logs; --", "%", "*"])
def test_values_are_bound_parameters(logs, value):
    for cond in (Cond("Body", "eq", value), Cond("ScopeName", "eq", value),
                 Cond("LogAttributes", "eq", value, key="celery.task_id"),
                 Cond("ScopeName", "in", [value, value + "'"]),
                 Cond("ScopeName", "startswith", value)):
        df = logs.logs(conds=[cond])
        # the one stored body that is literally this text matches itself, and nothing else matches
        expected = [value] if cond.column == "Body" and value == "x' OR '1'='1" else []
        assert list(df.Body) == expected, cond
    assert len(logs.logs()) == 5
    assert logs.schema_version() == SCHEMA_VERSION


# -- many writer processes -----------------------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys, time, json
    from omegaml_otel._internal.stores import schema
    from omegaml_otel._internal.stores.sqlite import SqliteStore
    path, writer, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    cols = schema.TABLES[schema.LOGS]
    defaults = {"time": 0, "int": 0, "float": 0.0, "str": "", "map": "{}", "list": "[]"}
    def row(i):
        v = {"Timestamp": time.time_ns(), "Body": f"{writer} {i}", "ScopeName": writer,
             "LogAttributes": json.dumps({"writer": writer, "i": str(i)})}
        return tuple(v.get(c, defaults[k]) for c, k in cols)
    store = SqliteStore(path)
    while time.time() < start:
        time.sleep(0.001)
    batch = 250
    for b in range(0, n, batch):
        store.write(schema.LOGS, [row(i) for i in range(b, min(n, b + batch))])
    store.close()
    print("done", writer)
""")


def test_three_writer_processes(tmp_path):
    path = tmp_path / "shared.sqlite"  # created by whichever writer comes first: schema creation races too
    n = 20_000
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{i}", str(n), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.startswith("done") and "Error" not in err, err
    store = SqliteStore(path)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        df = store.logs(columns=["ScopeName", MapKey("LogAttributes", "i")])
        assert len(df) == 3 * n
        for i in range(3):
            mine = df[df.ScopeName == f"w{i}"]
            assert len(mine) == n
            assert set(mine["LogAttributes['i']"].astype(int)) == set(range(n))
        # the writers really overlapped: their rows interleave in time order
        changes = (df.ScopeName != df.ScopeName.shift()).sum()
        assert changes > 3
    finally:
        store.close()
    conn = sqlite3.connect(path)
    versions = conn.execute("SELECT count(*) FROM omtel_schema").fetchone()[0]
    conn.close()
    assert versions == 1, f"the writers racing to create the schema recorded its version {versions} times"


def test_concurrent_schema_creation_records_one_version(tmp_path):
    """Openers racing on a fresh file create the schema once and record its version once."""
    import threading

    duplicates, errors = [], []
    for k in range(20):
        path = tmp_path / f"race{k}.sqlite"
        barrier = threading.Barrier(4)

        def open_it():
            s = SqliteStore(path)
            barrier.wait()
            try:
                assert s.schema_version() == SCHEMA_VERSION
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                s.close()

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn = sqlite3.connect(path)
        count = conn.execute("SELECT count(*) FROM omtel_schema").fetchone()[0]
        conn.close()
        if count != 1:
            duplicates.append(count)
    # e.g. 'database is locked' from PRAGMA journal_mode=WAL while another opener converts the file
    assert not errors, f"{len(errors)} of 80 opens failed: {errors[0]!r}"
    assert not duplicates, f"omtel_schema got {duplicates} version rows instead of 1"


# -- open_store ---------------------------------------------------------------------------------------------------
def test_open_store_absolute_path(tmp_path):
    rel = str(tmp_path).lstrip("/")
    s = open_store(f"sqlite:///{rel}/a.sqlite")
    assert isinstance(s, SqliteStore) and s.path == tmp_path / "a.sqlite"
    s.write(schema.LOGS, [row(schema.LOGS, Body="via url")])
    assert list(s.logs().Body) == ["via url"]
    s.close()
    # four slashes (what f"sqlite:///{absolute path}" gives, as settings build it) name the same file
    s = open_store(f"sqlite:////{rel}/a.sqlite")
    assert list(s.logs().Body) == ["via url"]
    assert s.path == tmp_path / "a.sqlite", "the store's path should be the normal absolute path, not '//…'"
    s.close()


@pytest.mark.parametrize("url", ["sqlite://relative/telemetry.sqlite", "sqlite://telemetry.sqlite"])
def test_open_store_relative_path(url):
    with pytest.raises(StoreError, match="absolute path") as info:
        open_store(url)
    assert "sqlite:///" in str(info.value) and url in str(info.value)


@pytest.mark.parametrize("url", ["mysql://db/telemetry", "telemetry.sqlite", "/abs/telemetry.sqlite",
                                 "file:///tmp/x.sqlite"])
def test_open_store_unknown_scheme(url):
    with pytest.raises(StoreError, match="not supported") as info:
        open_store(url)
    msg = str(info.value)
    assert "sqlite:///" in msg and "OMTEL_STORE" in msg


def test_open_store_missing_without_create(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/missing.sqlite", create=False)
    with pytest.raises(StoreError, match="does not exist") as info:
        s.logs()
    assert "OMTEL_HOME" in str(info.value)
    assert not (tmp_path / "missing.sqlite").exists()


def test_unwritable_path_is_a_store_error():
    s = SqliteStore("/proc/omtel-nope/telemetry.sqlite")
    with pytest.raises(StoreError, match="OMTEL_HOME") as info:
        s.write(schema.LOGS, [row(schema.LOGS, Body="x")])
    assert "/proc/omtel-nope/telemetry.sqlite" in str(info.value)


@pytest.mark.parametrize("lookup", ["runs and clears", "a run's events", "declared provider"])
def test_experiment_lookups_use_the_experiment_index(tmp_path, lookup):
    """exp.data(run=...) and its lookups have no time bound: the partial index on the experiment name (schema 4)
    makes them lookups instead of reading every experiment event (benchmark 15)."""
    conds = {"runs and clears": [*event_conds("exp", [Event.START, Event.CLEAR]),
                                 Cond("Body", "in", [Event.START, Event.CLEAR])],
             "a run's events": [*event_conds("exp"), Cond("LogAttributes", "ne", "", key=RUN),
                                Cond("LogAttributes", "in", ["r1"], key=RUN)],
             "declared provider": event_conds("exp", Event.DECLARED)}[lookup]
    store = SqliteStore(tmp_path / "idx.sqlite")
    store.schema_version()
    dialect = _SqliteDialect()
    sql = dialect.render(QueryPlan.build(schema.LOGS, conds=conds, columns=["Timestamp"]), schema.LOGS)
    with sqlite3.connect(store.path) as conn:
        plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, dialect.params))
    store.close()
    assert "USING INDEX otel_logs_experiment_ts" in plan, plan


PAGE_CACHE = textwrap.dedent("""
    import ctypes, os, sys, _sqlite3
    sys.path.insert(0, sys.argv[2])
    from schema_rows import row
    from omegaml_otel._internal.stores import schema
    from omegaml_otel._internal.stores.sqlite import SqliteStore

    sqlite_memory = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used  # SQLite's own heap, all connections
    sqlite_memory.restype = ctypes.c_int64
    store = SqliteStore(sys.argv[1], retention=None)
    for i in range(2000):  # random trace ids: the TraceId index takes inserts all over, as from many tasks
        store.write(schema.TRACES, [row(schema.TRACES, TraceId=os.urandom(16).hex(), SpanName=f"s{i % 7}")
                                    for _ in range(8)])
    print(store._connection().execute("PRAGMA cache_size").fetchone()[0], sqlite_memory())
""")


def test_a_writers_page_cache_stays_small(tmp_path):
    """SQLite's default page cache (2 MiB) fills up in a process that writes a growing store and keeps its memory
    dirty; a writer needs the upper pages of a few b-trees. 16,000 spans (a 7 MB store) in a fresh process, so
    that no other connection's memory counts: with SQLite's default it held 2.3 MB, with the cap 0.5 MB (the cache,
    the schema and the statements)."""
    support = Path(__file__).parent / "support"
    out = subprocess.run([sys.executable, "-c", PAGE_CACHE, str(tmp_path / "grown.sqlite"), str(support)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cache_size, used = map(int, out.stdout.split())
    assert cache_size == -CACHE_KIB
    assert used < 4 * CACHE_KIB * 1024, f"SQLite holds {used / 1024:.0f} KiB after the writes"

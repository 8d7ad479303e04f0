"""Key-pruned reads on ClickHouse: every query that the readers, ``omtel logs -f`` and the Grafana panels issue with
a time bound also bounds the column the table is partitioned and sorted by, so ClickHouse reads only the parts of
that time range, and the rows are the same as without that bound. The log dataset's window start (its latest reset)
is found by bounded searches too.

chdb holds a part per day and table (merges stopped); tests/support/key_pruning.py runs the readers there in a
subprocess (chdb opens one data folder per process), captures the SQL they send and reports what
``EXPLAIN indexes = 1`` says each query reads. The window-start tests run on the embedded SQLite store, in-process.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omegaml_otel._internal.compat.logger import LogDataset
from omegaml_otel._internal.stores import Cond, schema
from omegaml_otel._internal.stores.base import to_ns
from omegaml_otel._internal.stores.clickhouse import _ClickHouseDialect
from omegaml_otel._internal.stores.plan import KeyBound, QueryPlan
from omegaml_otel._internal.stores.sqlite import SqliteStore, _SqliteDialect
from omegaml_otel.conventions import DATASET, LOG_DATASET, LOG_RESET, SYSTEM_LOGGER
from schema_rows import row

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "support" / "key_pruning.py"
S = 10**9
HOUR = 3600 * S

#: the shapes whose every query must be pruned by the time key (the rest: see test_one_run_of_exp_data)
KEYED = [
    "logger rows, reset 60 h ago (first search)", "time range in the window",
    "logger rows, after a reset (later search)", "one task's records by id", "follow, first poll", "follow, next poll",
    "telemetry.logs time range", "telemetry.spans time range", "telemetry.metrics time range",
    "telemetry.logs time range (v0.151+ logs layout)", "dashboard panels", "dashboard panels (v0.151+ logs layout)",
]


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("pruning")
    env = {**os.environ, "OMTEL_HOME": str(tmp / "home"), "OMTEL_STORE": f"chdb://{tmp / 'chdb'}"}
    proc = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _where(query: dict) -> str:
    return f"{query['sql'][:400]}\n{query['params']}\nreads {query['reads']}"


@pytest.mark.parametrize("shape", KEYED)
def test_every_query_reads_only_the_parts_of_its_time_range(probe, shape):
    queries = probe["shapes"][shape]
    assert queries, f"{shape}: no query captured"
    for q in queries:
        for read in q["reads"]:  # no read at all: a table without parts, or system.columns
            (_, keyed_parts, parts), (_, keyed_granules, granules) = read["parts"], read["granules"]
            assert parts > 1 and keyed_parts < parts and keyed_granules < granules, _where(q)


@pytest.mark.parametrize("shape", KEYED)
def test_the_key_bounds_keep_every_row(probe, shape):
    """Each query that bounds TimestampTime returns what it returns without those bounds (the edge cases at whole
    seconds: test_a_record_at_the_end_of_a_second)."""
    compared = [q["same_rows_without_key_bounds"] for q in probe["shapes"][shape]]
    assert all(c is not False for c in compared), [_where(q) for q in probe["shapes"][shape]]
    if "v0.151" not in shape and "spans" not in shape and "metrics" not in shape:
        assert True in compared, f"{shape}: no query bounds TimestampTime"  # so the comparison above ran


def test_window_start_searches_back_in_bounded_steps(probe):
    first = probe["shapes"]["logger rows, reset 60 h ago (first search)"]
    # the last hour, the 7 before, the 56 before those (which holds the reset 60 h ago), then the rows themselves
    assert len(first) == 4, [q["sql"][:200] for q in first]
    later = probe["shapes"]["logger rows, after a reset (later search)"]
    assert len(later) == 2  # what arrived since the previous call (it holds the new reset), then the rows
    rows, expected = probe["checks"]["rows since the old reset, and a count without the readers"]
    assert rows == expected > 0
    assert probe["checks"]["messages after the reset"] == ["hello"]


def test_the_readers_return_the_same_records(probe):
    checks = probe["checks"]
    assert checks["task records"] == ["task line 0", "task line 1", "task line 2"]
    assert checks["followed"] == ["followed"]
    assert checks["rows in the time range"] > 0 and checks["telemetry.logs rows"] > 0
    assert checks["panels without rows"] == {} and checks["panels without rows (v0.151+ logs layout)"] == {}


def test_a_record_at_the_end_of_a_second(probe):
    """TimestampTime is toDateTime(Timestamp), truncated: bounds at x.999999999 s and around it keep the record."""
    assert probe["checks"]["edge"] == {"at": 1, "from x.5": 1, "until x+1": 1, "from x+1": 0, "until x.5": 0}


def test_one_run_of_exp_data(probe):
    """``exp.data(run=...)`` has no time bound to give: ``dt=`` puts an event at any time, before its run's start
    too. Its reads are pruned by the bloom-filter indexes on attribute values (the run id, the experiment name)."""
    queries = probe["shapes"]["one run's exp.data()"]
    assert probe["checks"]["exp.data rows"] == ["metric", "metric", "start", "stop"]
    for q in queries:
        for read in q["reads"]:
            (selected, _, parts), (selected_granules, _, granules) = read["parts"], read["granules"]
            assert selected < parts and selected_granules < granules, _where(q)


# -- the bounds themselves ---------------------------------------------------------------------------------------
def test_key_bounds_are_whole_seconds_that_keep_the_range():
    t = 1_767_225_600
    plan = QueryPlan.build(schema.LOGS, since=t * S + S - 1, until=(t + 5) * S + 1)
    assert plan.key_bounds == (KeyBound("TimestampTime", "gte", t), KeyBound("TimestampTime", "lte", t + 6))
    # the tightest of several bounds on the time column, eq and in included; other columns and ops give none
    plan = QueryPlan.build(schema.LOGS, since=t * S, conds=[
        Cond("Timestamp", "gt", (t + 2) * S), Cond("Timestamp", "in", [(t + 3) * S, (t + 9) * S]),
        Cond("Timestamp", "lt", (t + 8) * S), Cond("Timestamp", "ne", 0), Cond("SeverityNumber", "gte", 9)])
    assert plan.key_bounds == (KeyBound("TimestampTime", "gte", t + 3), KeyBound("TimestampTime", "lte", t + 8))
    assert QueryPlan.build(schema.LOGS, conds=[Cond("Timestamp", "eq", t * S)]).key_bounds == (
        KeyBound("TimestampTime", "gte", t), KeyBound("TimestampTime", "lte", t))
    # outside what a DateTime holds a bound prunes nothing and is left out; tables without a key column get none
    assert QueryPlan.build(schema.LOGS, since=5, until=2**33 * S).key_bounds == ()
    assert QueryPlan.build(schema.LOGS, conds=[Cond("Timestamp", "in", [])]).key_bounds == ()
    assert QueryPlan.build(schema.TRACES, since=t * S).key_bounds == ()


def test_the_dialects_render_the_key_bounds_where_the_layout_has_the_column():
    t = 1_767_225_600
    plan = QueryPlan.build(schema.LOGS, columns=["Body"], since=t * S + 5, until=(t + 60) * S)
    layout = {c: "String" for c in schema.columns(schema.LOGS)}

    class Store:
        url = "chdb:///x"

    with_key = _ClickHouseDialect({**layout, "TimestampTime": "DateTime"}, Store(), "t")
    assert with_key.render(plan, "t") == (
        "SELECT `Body` AS c0 FROM t WHERE (`Timestamp` >= fromUnixTimestamp64Nano({p0:Int64})) "
        "AND (`Timestamp` <= fromUnixTimestamp64Nano({p1:Int64})) AND (`TimestampTime` >= toDateTime({p2:UInt32})) "
        "AND (`TimestampTime` <= toDateTime({p3:UInt32})) ORDER BY `Timestamp` ASC")
    assert with_key.params == {"p0": t * S + 5, "p1": (t + 60) * S, "p2": t, "p3": t + 60}
    newer = _ClickHouseDialect(layout, Store(), "t")  # the v0.151+ layout: keyed on Timestamp, nothing to add
    assert "TimestampTime" not in newer.render(plan, "t")
    assert "TimestampTime" not in _SqliteDialect().render(plan, "otel_logs")


# -- the window start, on the embedded store -------------------------------------------------------------------
class _Recorder:
    """The SqliteStore itself, with the time range of each query noted (every call still runs)."""

    def __init__(self, store: SqliteStore):
        self.store, self.ranges = store, []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def logs(self, **kw):
        self.ranges.append((kw.get("since"), kw.get("until")))
        return self.store.logs(**kw)


def _reset(ns: int) -> tuple:
    return row(schema.LOGS, Timestamp=ns, Body="log init", ScopeName=SYSTEM_LOGGER,
               LogAttributes={DATASET: LOG_DATASET, LOG_RESET: "true"})


@pytest.fixture
def lite(tmp_path):
    store = SqliteStore(tmp_path / "t.sqlite")
    yield _Recorder(store)
    store.close()


def test_window_start_search_widens_until_it_finds_the_reset(lite):
    now = time.time_ns()
    dataset = LogDataset(store=lite)
    assert dataset._window_start() is None
    # never reset: 8 searches back from now, each 8 times as long, the last one open towards the past
    assert len(lite.ranges) == 8 and lite.ranges[0][1] is None and lite.ranges[-1][0] is None
    assert all(since is not None for since, _ in lite.ranges[:-1])
    lite.write(schema.LOGS, [_reset(now - 240 * HOUR), _reset(now - 300 * HOUR)])
    lite.ranges.clear()
    fresh = LogDataset(store=lite)
    assert fresh._window_start().value == now - 240 * HOUR
    # [now-1h, ...), [now-8h, now-1h], [now-64h, now-8h], [now-512h, now-64h]: found in the fourth
    assert [(round((now - s) / HOUR), u and round((now - u) / HOUR)) for s, u in
            [(since, until) for since, until in lite.ranges]] == [(1, None), (8, 1), (64, 8), (512, 64)]


def test_window_start_later_calls_look_at_what_arrived_since(lite, tmp_path):
    now = time.time_ns()
    lite.write(schema.LOGS, [_reset(now - 240 * HOUR)])
    dataset = LogDataset(store=lite)
    assert dataset._window_start().value == now - 240 * HOUR
    lite.ranges.clear()
    assert dataset._window_start().value == now - 240 * HOUR  # nothing new: a recent search, then the known one
    assert len(lite.ranges) == 2 and lite.ranges[0][1] is None and lite.ranges[0][0] >= now - 2 * HOUR
    lite.write(schema.LOGS, [_reset(now - HOUR // 2)])  # another process resets
    assert dataset._window_start().value == now - HOUR // 2
    with sqlite3.connect(tmp_path / "t.sqlite") as db:  # retention (or a test) deletes the latest reset
        db.execute("DELETE FROM otel_logs WHERE Timestamp = ?", (now - HOUR // 2,))
    assert dataset._window_start().value == now - 240 * HOUR
    with sqlite3.connect(tmp_path / "t.sqlite") as db:
        db.execute("DELETE FROM otel_logs")
    assert dataset._window_start() is None


def test_follow_polls_from_what_it_printed_also_when_given_since(lite):
    """``omtel logs -f --since 1h``: each poll after the first reads from the newest record it printed (the filters
    passed ``since`` twice before, and the second poll raised TypeError)."""
    def record(body: str) -> tuple:
        return row(schema.LOGS, Timestamp=time.time_ns(), SeverityText="INFO", SeverityNumber=9, Body=body,
                   ScopeName="simple", LogAttributes={DATASET: LOG_DATASET, "omegaml.levelno": "20"})

    first = record("first")
    lite.write(schema.LOGS, [first])
    follow = LogDataset(store=lite).follow(interval=0.01, since="1h")
    assert list(next(follow).msg) == ["first"]
    lite.write(schema.LOGS, [record("second")])
    lite.ranges.clear()
    assert list(next(follow).msg) == ["second"]
    assert to_ns(lite.ranges[-1][0]) == first[0]  # the rows from the first record on, not from an hour ago

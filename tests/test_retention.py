"""Retention of the embedded store (OMTEL_RETENTION, omtel prune): old rows go; recent rows, pinned runs, the log
dataset window and experiment bookkeeping stay; the file shrinks; writers of other processes keep writing.

The rows are real rows of the logical schema written with ``SqliteStore.write`` (the writers' own call), back-dated
by their time columns, into a store of each test's own: the session's store keeps OMTEL_RETENTION=off (conftest).
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from omegaml_otel._internal.compat.logger import LogDataset
from omegaml_otel._internal.stores import retention, schema
from omegaml_otel._internal.stores.sqlite import SqliteStore
from omegaml_otel.conventions import (
    DATASET,
    EVENT,
    EXPERIMENT,
    EXPERIMENT_SCOPE,
    LEVELNO,
    LOG_DATASET,
    LOG_RESET,
    RUN,
    SYSTEM_LOGGER,
    Event,
)
from omegaml_otel.errors import ConfigurationError
from omegaml_otel.settings import parse_duration, reset_settings, settings
from omtel_cli import omtel

DAY = 86_400 * 10**9
NOW = time.time_ns()
OLD = NOW - 40 * DAY          # beyond a 30-day retention
WINDOW = NOW - 35 * DAY       # the dataset's latest reset: old, but its window must stay
PINNED, UNPINNED = "a" * 32, "b" * 32
#: a resource map as large as a real one (about 270 bytes), so that deleting rows frees real space
RESOURCE = {"service.name": "retention-test", "host.name": "h", "telemetry.sdk.version": "1.0", "pad": "x" * 200}
BULK = 20_000


def row(table: str, ts: int, **values) -> tuple:
    """One row of ``table`` at time ``ts``: every time column ``ts``, other columns empty unless given
    (``Events_Name`` for ``Events.Name``); maps and lists given as Python objects."""
    out = []
    for column, kind in schema.TABLES[table]:
        empty = {"time": ts, "int": 0, "float": 0.0, "str": "", "map": {}, "list": []}[kind]
        value = values.get(column.replace(".", "_"), empty)
        out.append(json.dumps(value) if kind in ("map", "list") else value)
    return tuple(out)


def log(ts: int, body: str, **attrs) -> tuple:
    return row(schema.LOGS, ts, Body=body, ResourceAttributes=RESOURCE, LogAttributes=attrs)


def event(ts: int, run: str, name: str) -> tuple:
    return row(schema.LOGS, ts, Body=name, ScopeName=EXPERIMENT_SCOPE, ResourceAttributes=RESOURCE,
               LogAttributes={EXPERIMENT: "exp", RUN: run, EVENT: name})


def dataset_record(ts: int, body: str, dataset: str = LOG_DATASET, reset: bool = False) -> tuple:
    attrs = {DATASET: dataset, LEVELNO: "999" if reset else "4"}
    if reset:
        attrs[LOG_RESET] = "true"
    return row(schema.LOGS, ts, Body=body, ScopeName=SYSTEM_LOGGER if reset else "simple",
               SeverityText="SYSTEM" if reset else "INFO", ResourceAttributes=RESOURCE, LogAttributes=attrs)


def checkpoint(path: Path) -> int:
    """The store's bytes once its write-ahead log is in the database file (what a fresh reader would see). The
    checkpoint waits for other connections (busy timeout) and must complete: a partial one would measure nothing."""
    with sqlite3.connect(path, timeout=10) as conn:
        for _ in range(50):  # a checkpoint under way (the writer's checkpoint thread) makes this one busy at once
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                break
            time.sleep(0.02)
    assert busy == 0, "the checkpoint could not complete: another connection kept a read transaction open"
    return retention.file_bytes(path)


def bodies(store: SqliteStore, table: str = schema.LOGS, column: str = "Body") -> set:
    return set(store.query(table, columns=[column])[column])


@pytest.fixture
def store(tmp_path) -> SqliteStore:
    s = SqliteStore(tmp_path / "telemetry.sqlite")
    yield s
    s.close()


def fill(store: SqliteStore) -> None:
    """Back-dated and recent rows of every kind retention must tell apart."""
    store.write(schema.LOGS, [log(OLD + i, f"bulk {i}") for i in range(BULK)])
    store.write(schema.LOGS, [
        log(NOW - DAY, "recent"),
        event(OLD, PINNED, Event.START), event(OLD + 1, PINNED, Event.METRIC),
        log(OLD + 2, "pinned task record", **{RUN: PINNED}),
        row(schema.LOGS, OLD + 3, Body="pinned trace record", TraceId=PINNED),
        event(OLD, UNPINNED, Event.START), event(OLD + 1, UNPINNED, Event.METRIC),
        row(schema.LOGS, OLD, Body=Event.DECLARED, ScopeName=EXPERIMENT_SCOPE,
            LogAttributes={EXPERIMENT: "exp", RUN: "", EVENT: Event.DECLARED}),
        dataset_record(OLD, "before the reset"), dataset_record(WINDOW, "log init", reset=True),
        dataset_record(WINDOW + 1, "old but in the window"), dataset_record(NOW - 1, "in the window"),
        dataset_record(OLD, "never reset", dataset="other/logs"),
    ])
    store.write(schema.TRACES, [row(schema.TRACES, OLD, SpanName="pinned run", TraceId=PINNED),
                                row(schema.TRACES, OLD, SpanName="child of a pinned run", TraceId="c" * 32,
                                    SpanAttributes={RUN: PINNED}),
                                row(schema.TRACES, OLD, SpanName="old", TraceId=UNPINNED),
                                row(schema.TRACES, NOW - DAY, SpanName="recent", TraceId="d" * 32)])
    store.write(schema.GAUGE, [row(schema.GAUGE, OLD, MetricName="pinned", Attributes={RUN: PINNED}),
                               row(schema.GAUGE, OLD, MetricName="old", Attributes={RUN: UNPINNED}),
                               row(schema.GAUGE, NOW - DAY, MetricName="recent")])
    store.write(schema.HISTOGRAM, [row(schema.HISTOGRAM, OLD, MetricName="old")])


def test_prune_keeps_recent_rows_pinned_runs_the_dataset_window_and_bookkeeping(store):
    fill(store)
    store.pin([PINNED], "exp")
    window = LogDataset(LOG_DATASET, store=store).get()
    before = checkpoint(store.path)

    result = store.prune(30 * 86_400)

    assert result.deleted[schema.LOGS] == BULK + 2  # the bulk, the unpinned metric event, the record before reset
    assert result.deleted[schema.TRACES] == 1 and result.deleted[schema.GAUGE] == 1
    assert result.deleted[schema.HISTOGRAM] == 1 and result.reclaimed and result.pinned_runs == 1
    assert result.windows == {LOG_DATASET: WINDOW}
    assert bodies(store) == {"recent", Event.START, Event.METRIC, "pinned task record", "pinned trace record",
                             Event.DECLARED, "log init", "old but in the window", "in the window", "never reset"}
    events = store.query(schema.LOGS, conds=[], columns=["Body", "LogAttributes"])
    assert sorted(a[RUN] for b, a in zip(events.Body, events.LogAttributes) if b == Event.START) == [PINNED, UNPINNED]
    assert bodies(store, schema.TRACES, "SpanName") == {"pinned run", "child of a pinned run", "recent"}
    assert bodies(store, schema.GAUGE, "MetricName") == {"pinned", "recent"}
    assert len(store.query(schema.HISTOGRAM)) == 0
    # what om.logger.dataset.get() shows is untouched: retention's window is the reader's window
    assert LogDataset(LOG_DATASET, store=store).get().equals(window) and len(window) == 3
    after = checkpoint(store.path)
    assert after < before / 3, (before, after)  # the bulk's pages went back to the file system
    assert store.prune(30 * 86_400).total == 0  # a second pass finds nothing more


def test_unpinned_runs_age_out_and_pins_are_listed(store):
    store.write(schema.LOGS, [event(OLD, PINNED, Event.METRIC)])
    store.pin([PINNED], "exp")
    assert [(r, e) for r, e, _ in store.pins()] == [(PINNED, "exp")]
    assert store.prune(30 * 86_400).total == 0
    assert store.unpin([PINNED]) == 1 and store.pins() == []
    assert store.prune(30 * 86_400).deleted[schema.LOGS] == 1


def test_a_writer_in_another_process_keeps_writing_while_retention_runs(store, tmp_path):
    store.write(schema.LOGS, [log(OLD + i, f"bulk {i}") for i in range(2 * BULK)])
    done = tmp_path / "pruned"
    writer = textwrap.dedent(f"""
        import json, os, time
        from omegaml_otel._internal.stores.sqlite import SqliteStore
        template, body = json.loads({json.dumps(json.dumps(log(0, "")))}), {schema.columns(schema.LOGS).index("Body")}
        store, n, after = SqliteStore({str(store.path)!r}), 0, 0
        while after < 20:  # every 5 ms a batch of 50 recent rows, until 20 batches after the prune ended
            rows = []
            for i in range(n, n + 50):
                row = list(template)
                row[0], row[body] = time.time_ns(), f"live {{i}}"
                rows.append(tuple(row))
            store.write("otel_logs", rows)
            if not n:
                print("writing", flush=True)
            n += 50
            after += os.path.exists({str(done)!r})
            time.sleep(0.005)
        print(n)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"  # the prune starts while it writes
    began = time.time_ns()
    result = store.prune(30 * 86_400)
    ended = time.time_ns()
    done.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "locked" not in err, err
    live = {b for b in bodies(store) if b.startswith("live ")}
    assert result.deleted[schema.LOGS] == 2 * BULK
    assert len(store.query(schema.LOGS, since=began, until=ended)) > 0  # it wrote while the prune ran
    assert len(live) == int(out) and int(out) > 20 * 50  # every row it wrote is there: none lost, none pruned


def test_background_pass_runs_once_per_interval_across_processes(store):
    store.write(schema.LOGS, [log(OLD, "old"), log(NOW, "recent")])
    worker = retention.RetentionThread(store.path, 30 * 86_400, every=3600)
    other = retention.RetentionThread(store.path, 30 * 86_400, every=3600)
    first = worker.run_if_due()
    assert first is not None and first.deleted[schema.LOGS] == 1
    assert oct(worker.lock_path.stat().st_mode & 0o777) == "0o600"
    store.write(schema.LOGS, [log(OLD, "old again")])
    assert other.run_if_due() is None  # the pass that just ended counts for every process
    assert "old again" in bodies(store)


def test_a_pass_in_progress_elsewhere_is_not_repeated(store):
    store.write(schema.LOGS, [log(OLD, "old")])
    thread = retention.RetentionThread(store.path, 30 * 86_400, every=0)
    thread.run_if_due()  # creates the lock file
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(thread.lock_path)!r}, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store.write(schema.LOGS, [log(OLD, "old again")])
        assert thread.run_if_due() is None and "old again" in bodies(store)
    finally:
        holder.communicate("", timeout=10)
    assert thread.run_if_due().deleted[schema.LOGS] == 1


def test_a_writing_process_starts_the_background_thread_once(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite", retention=30 * 86_400)
    names = lambda: [t for t in threading.enumerate() if t.name == "omtel-retention"]  # noqa: E731
    before = len(names())
    store.write(schema.LOGS, [log(NOW, "a")])
    store.write(schema.LOGS, [log(NOW, "b")])
    assert len(names()) == before + 1
    store.close()  # ends it
    deadline = time.monotonic() + 5
    while len(names()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(names()) == before


def test_the_background_thread_prunes_while_the_process_writes(store):
    store.write(schema.LOGS, [log(OLD, "old")])
    thread = retention.RetentionThread(store.path, 30 * 86_400, every=0, check=0.05, first=0).start()
    try:
        deadline = time.monotonic() + 20
        while "old" in bodies(store) and time.monotonic() < deadline:
            store.write(schema.LOGS, [log(time.time_ns(), "new")])
            time.sleep(0.05)
    finally:
        thread.stop()
    assert bodies(store) == {"new"}


def test_a_store_made_before_incremental_vacuum_is_switched_by_one_vacuum(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # as stores were created before retention: WAL first, auto_vacuum none
        conn.execute("PRAGMA journal_mode=WAL")
    store = SqliteStore(path)
    store.write(schema.LOGS, [log(OLD + i, f"bulk {i}") for i in range(BULK)] + [log(NOW, "recent")])
    before = checkpoint(path)
    result = store.prune(30 * 86_400)
    assert result.deleted[schema.LOGS] == BULK and not result.reclaimed
    assert checkpoint(path) >= before  # the pages are free for later writes, but the file keeps them
    store.vacuum()
    assert checkpoint(path) < before / 3
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
    assert bodies(store) == {"recent"}
    store.close()


def test_new_stores_are_incremental(store):
    store.schema_version()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


def test_retention_setting(monkeypatch):
    for value, seconds in (("", 30 * 86_400), ("30d", 30 * 86_400), ("12h", 43_200), ("1.5w", 907_200),
                           ("90m", 5400), ("off", None), ("0", None)):
        monkeypatch.setenv("OMTEL_RETENTION", value)
        reset_settings()
        assert settings().retention == seconds, value
    monkeypatch.setenv("OMTEL_RETENTION", "30 days")
    reset_settings()
    with pytest.raises(ConfigurationError, match="OMTEL_RETENTION='30 days': give a duration such as 30d"):
        settings()
    monkeypatch.delenv("OMTEL_RETENTION")
    reset_settings()
    with pytest.raises(ConfigurationError, match="--older-than"):
        parse_duration("-5d", "--older-than")


def test_omtel_prune_and_pin(tmp_path):
    path = tmp_path / "cli.sqlite"
    store = SqliteStore(path)
    store.write(schema.LOGS, [log(OLD + i, f"bulk {i}") for i in range(100)] + [event(OLD, PINNED, Event.METRIC)])
    store.close()
    env = {**os.environ, "OMTEL_HOME": str(tmp_path), "OMTEL_STORE": f"sqlite://{path}"}
    assert omtel("pin", "exp", PINNED, env=env).returncode == 0
    listed = omtel("pin", "--list", env=env)
    assert listed.returncode == 0 and PINNED in listed.stdout, listed.stdout
    pruned = omtel("prune", "--older-than", "30d", env=env)
    assert pruned.returncode == 0 and "deleted 100 rows" in pruned.stdout, pruned.stdout
    bad = omtel("prune", "--older-than", "soon", env=env)
    assert bad.returncode == 2 and "--older-than='soon'" in bad.stderr, bad.stderr
    # the pinned metric stays, the bulk went (`omtel pin` declares its experiment in the store it was given)
    assert bodies(SqliteStore(path)) - {Event.DECLARED} == {Event.METRIC}


def test_exp_pin_keeps_a_run_through_a_prune(tmp_path):
    """The user's way: two runs log back-dated metrics, one is pinned with exp.pin(); a prune keeps only its rows,
    and both runs keep their numbers."""
    code = textwrap.dedent("""
        import datetime, json, omegaml_otel as om
        from omegaml_otel._internal.stores import default_store
        old = datetime.datetime.utcnow() - datetime.timedelta(days=40)
        for i in range(2):
            with om.runtime.experiment("pinning") as exp:
                exp.log_metric("acc", i, dt=old)
            if i == 0:
                assert exp.pin() == [exp.runs().run_id.iloc[0]]
        result = default_store().prune(30 * 86400)
        data = exp.data(run="all", event="metric")
        print(json.dumps([result.deleted["otel_logs"], [int(r) for r in data.run], [float(v) for v in data.value],
                          [int(r) for r in exp.runs().run]]))
    """)
    env = {**os.environ, "OMTEL_HOME": str(tmp_path), "OMTEL_RETENTION": "30d"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    deleted, runs, values, numbers = json.loads(out.stdout)
    assert (deleted, runs, values, numbers) == (1, [1], [0.0], [1, 2]), out.stdout  # run 2's metric went

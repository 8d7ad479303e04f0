"""Everyday reads on big stores vs on stores holding only their result rows: what the time key saves at scale.

Per engine, two stores hold the same **current rows**, made through the real pipeline (``om.logger.reset()``, 1,000
``om.logger.info()`` records, 20 records of one task, one experiment run of 200 metrics):

- ``big``   -- those rows after ``--days`` days of history: ``--rows`` log records (50,000,000 on ClickHouse,
  5,000,000 on SQLite), generated inside the engine (ClickHouse: ``INSERT … SELECT … FROM numbers()``, one INSERT
  per day, then merged to one part a day; SQLite: a recursive CTE). Like a real log dataset: records of the simple
  logger and of Python loggers with task ids on four hosts, a reset a day, and events of other experiments;
- ``small`` -- the current rows only: what the reads return.

The reads, each timed on both stores, alternating which goes first:

- ``window``  -- ``om.logger.dataset.get()``: the records since the latest reset (a new dataset object each time,
  so the window start is searched as on a process's first read);
- ``task``    -- ``dataset.get(taskid=...)``: one task's records (a new dataset object each time);
- ``recent``  -- ``om.telemetry.logs(since=<the reset>)``: a time range;
- ``follow``  -- one ``omtel logs -f`` poll: ``dataset.get(since=<newest record printed>)`` on a dataset object that
  has read before (its window start is known);
- ``run``     -- ``exp.data(run=1)`` on the experiment (no time bound: events can carry any ``dt=``).

Reported: big / small per read and engine (target 1.5). Each read's frames from the two stores are compared.

    python benchmarks/bench_scale.py [--rows 50000000 --sqlite-rows 5000000 --days 30 --rounds 5] [--quick]
    python benchmarks/bench_scale.py --only sqlite
"""
from __future__ import annotations

import argparse
import gc
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, fresh_home, loadavg, machine, median, remove_home, table, verdict  # noqa: E402

TARGET = 1.5
ENGINES = ("clickhouse", "sqlite")
READS = ("window", "task", "recent", "follow", "run")
S = 10**9
TASK = "task-now"
EXPERIMENT = "bench"


def current_rows(om) -> list[tuple]:
    """The current rows, made through the real pipeline into the embedded store of OMTEL_HOME, as schema rows."""
    from omegaml_otel._internal.capture.context import record_attributes
    from omegaml_otel._internal.export.pipeline import flush_for_read
    from omegaml_otel._internal.stores import default_store, schema
    from omegaml_otel.conventions import TASK_ID, TASK_NAME

    om.logger.reset()
    for i in range(1000):
        om.logger.info(f"current item {i}")
    token = record_attributes.set({TASK_ID: TASK, TASK_NAME: "bench.task"})
    try:
        for i in range(20):
            om.logger.info(f"task line {i}")
    finally:
        record_attributes.reset(token)
    with om.runtime.experiment(EXPERIMENT, provider="simple") as exp:
        for i in range(200):
            exp.log_metric("acc", i / 200, step=i)
    flush_for_read()
    cols = ", ".join(f'"{c}"' for c in schema.columns(schema.LOGS))
    with sqlite3.connect(default_store().path) as con:
        return con.execute(f"SELECT {cols} FROM otel_logs ORDER BY Timestamp").fetchall()


# -- history, generated in each engine ---------------------------------------------------------------------------
# record i of n: one reset a day, 1 in 100 an event of another experiment, 1 in 5 a simple-logger record, the
# others Python records with a task id; four hosts; attribute values as the writers store them (strings)
_CH_HISTORY = """
INSERT INTO {db}.otel_logs (Timestamp, ServiceName, SeverityText, SeverityNumber, Body, ResourceAttributes,
                            ScopeName, LogAttributes)
SETTINGS max_insert_block_size = {n}, min_insert_block_size_rows = 0, min_insert_block_size_bytes = 0
SELECT fromUnixTimestamp64Nano(toInt64({t0} + number * {step})) AS ts, 'omegaml-worker', 'INFO', 9,
       multiIf(number % {per_day} = 0, 'log init', number % 100 = 1, 'metric acc', concat('processed item ',
               toString(number))),
       map('service.name', 'omegaml-worker', 'host.name', concat('worker-', toString(number % 4))),
       multiIf(number % {per_day} = 0, 'system', number % 100 = 1, 'omegaml.experiment', number % 5 = 0, 'simple',
               'app.module'),
       multiIf(number % {per_day} = 0, map('omegaml.log.dataset', '.omega/logs', 'omegaml.levelno', '999',
                                            'omegaml.log.reset', 'true'),
               number % 100 = 1, map('omegaml.experiment', concat('old-', toString(number % 7)), 'omegaml.run.id',
                                     hex(intDiv(number, 100000)), 'omegaml.event', 'metric', 'omegaml.key', 'acc',
                                     'omegaml.value', '0.5'),
               number % 5 = 0, map('omegaml.log.dataset', '.omega/logs', 'omegaml.levelno', '4'),
               map('omegaml.log.dataset', '.omega/logs', 'celery.task_id',
                   concat('task-', toString(intDiv(number, 50))), 'celery.task_name', 'bench.task'))
FROM numbers({first}, {n})
"""
_SQLITE_HISTORY = """
INSERT INTO otel_logs (Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, Body,
                       ResourceSchemaUrl, ResourceAttributes, ScopeSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes,
                       LogAttributes, EventName)
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :n)
SELECT :t0 + i * :step, '', '', 0, 'INFO', 9, 'omegaml-worker',
       CASE WHEN i % :per_day = 0 THEN 'log init' WHEN i % 100 = 1 THEN 'metric acc'
            ELSE 'processed item ' || i END, '',
       json_object('service.name', 'omegaml-worker', 'host.name', 'worker-' || (i % 4)), '',
       CASE WHEN i % :per_day = 0 THEN 'system' WHEN i % 100 = 1 THEN 'omegaml.experiment'
            WHEN i % 5 = 0 THEN 'simple' ELSE 'app.module' END, '', '{}',
       CASE WHEN i % :per_day = 0 THEN json_object('omegaml.log.dataset', '.omega/logs', 'omegaml.levelno', '999',
                                                  'omegaml.log.reset', 'true')
            WHEN i % 100 = 1 THEN json_object('omegaml.experiment', 'old-' || (i % 7), 'omegaml.run.id',
                                              printf('%x', i / 100000), 'omegaml.event', 'metric', 'omegaml.key',
                                              'acc', 'omegaml.value', '0.5')
            WHEN i % 5 = 0 THEN json_object('omegaml.log.dataset', '.omega/logs', 'omegaml.levelno', '4')
            ELSE json_object('omegaml.log.dataset', '.omega/logs', 'celery.task_id', 'task-' || (i / 50),
                             'celery.task_name', 'bench.task') END, ''
FROM n
"""


def clickhouse_stores(home: Path, rows: int, days: int, end_ns: int, current: list[tuple]):
    from omegaml_otel._internal.stores import schema
    from omegaml_otel._internal.stores.clickhouse import ClickHouseStore

    big = ClickHouseStore(f"chdb://{home / 'chdb'}?database=big")
    small = ClickHouseStore(f"chdb://{home / 'chdb'}?database=small")
    for store in (big, small):
        store.apply_schema()
        store.write(schema.LOGS, current)
    client = big._conn()
    step, per_day = days * 86400 * S // rows, rows // days
    t0 = end_ns - rows * step
    for day in range(days):
        first = day * per_day
        n = per_day if day < days - 1 else rows - first
        client.command(_CH_HISTORY.format(db="big", n=n, first=first, t0=t0, step=step, per_day=per_day))
    # one part a day (the table is partitioned by day), as merges leave a settled table: an INSERT … SELECT writes a
    # part per block of numbers() (65,536 rows; 361 parts for 20M rows), and every unbounded read pays for each part
    client.command("OPTIMIZE TABLE big.otel_logs FINAL")
    return big, small


def sqlite_stores(home: Path, rows: int, days: int, end_ns: int, current: list[tuple]):
    from omegaml_otel._internal.stores import schema
    from omegaml_otel._internal.stores.sqlite import SqliteStore

    big, small = SqliteStore(home / "big.sqlite"), SqliteStore(home / "small.sqlite")
    for store in (big, small):
        store.write(schema.LOGS, current)   # which also creates the tables
    step, per_day = days * 86400 * S // rows, rows // days
    with sqlite3.connect(big.path) as con:
        con.execute(_SQLITE_HISTORY, {"n": rows, "t0": end_ns - rows * step, "step": step, "per_day": per_day})
    return big, small


def reads(om, store) -> dict:
    """The timed reads on ``store``."""
    from omegaml_otel._internal.compat.experiment import open_experiment
    from omegaml_otel._internal.compat.logger import LogDataset

    polling = LogDataset(store=store)
    printed = polling.get()["created"]
    last = printed.iloc[-11]    # a poll that finds the 10 newest records
    start = printed.iloc[0]     # the reset
    exp = open_experiment(EXPERIMENT, store=store)

    def follow():
        df = polling.get(since=last)
        return df[df["created"] > last]

    return {"window": lambda: LogDataset(store=store).get(), "task": lambda: LogDataset(store=store).get(taskid=TASK),
            "recent": lambda: om.telemetry.logs(since=start, store=store), "follow": follow,
            "run": lambda: exp.data(run=1)}


def same(a, b) -> bool:
    def canon(df):
        return df.astype(str).sort_values(list(df.columns), ignore_index=True)
    return a.shape == b.shape and canon(a).equals(canon(b))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=50_000_000, help="history rows on ClickHouse (chdb)")
    ap.add_argument("--sqlite-rows", type=int, default=5_000_000, help="history rows on SQLite")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="", help="comma list of: " + ", ".join(ENGINES))
    ap.add_argument("--quick", action="store_true", help="smoke run: 200,000 / 50,000 rows over 10 days, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.sqlite_rows, args.days, args.rounds = 200_000, 50_000, 10, 2
    engines = [e for e in ENGINES if not args.only or e in args.only.split(",")]

    home = fresh_home("scale")
    import omegaml_otel as om

    print(f"# scale: ClickHouse {args.rows:,} rows, SQLite {args.sqlite_rows:,} rows over {args.days} days, "
          f"{args.rounds} rounds; {machine()}; load {loadavg()}")
    current = current_rows(om)
    end_ns = current[0][0] - 60 * S   # the history ends a minute before the current rows begin
    out_rows, metrics = [], {}
    try:
        for engine in engines:
            t = time.perf_counter()
            n = args.rows if engine == "clickhouse" else args.sqlite_rows
            make = clickhouse_stores if engine == "clickhouse" else sqlite_stores
            big, small = make(home, n, args.days, end_ns, current)
            print(f"# {engine}: {n:,} history rows + {len(current):,} current rows in {time.perf_counter() - t:.0f}s")
            sides = {"big": reads(om, big), "small": reads(om, small)}
            times = {(side, r): [] for side in sides for r in READS}
            for r in READS:   # warm-up, and the frames of both stores compared
                frames = {side: sides[side][r]() for side in sides}
                if not same(frames["big"], frames["small"]):
                    print(f"# WARNING: {engine} {r}: the big store's frame differs: "
                          f"{frames['big'].shape} vs {frames['small'].shape}")
                    metrics[f"{engine}_{r}_differs"] = 1
            for i in range(args.rounds):
                for r in READS:
                    for side in (("big", "small") if i % 2 == 0 else ("small", "big")):
                        gc.collect()
                        t = time.perf_counter()
                        sides[side][r]()
                        times[side, r].append(time.perf_counter() - t)
            for r in READS:
                b, s = median(times["big", r]), median(times["small", r])
                metrics[f"{engine}_{r}_ratio"] = b / s
                out_rows.append([engine, r, b * 1000, s * 1000, b / s, f"<= {TARGET}  {verdict(b / s, TARGET)}"])
            for store in (big, small):
                store.close()
    finally:
        remove_home(home)
    print(table(["engine", "read", "big ms", "small ms", "big / small", "target"], out_rows))
    emit_result("scale", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reading the log dataset: ``om.logger.dataset.get()`` over 1,000,000 rows vs a bare SQL query of the same rows.

The store (a temporary OMTEL_HOME) is filled fast: a few records are logged through the real pipeline
(``om.logger`` and a captured Python logger, so the rows carry the real resource, scope and ``LogAttributes``
with ``"omegaml.log.dataset": ".omega/logs"``), then copied with new timestamps and messages by
``SqliteStore.write('otel_logs', rows)`` until the dataset has N rows (1 in 6 simple-logger rows, the rest
Python records at INFO/WARNING/ERROR from four loggers).

Sides, alternating round by round:

- ``dataset.get()``        -- the compatibility reader: omega-ml's layout (level, levelno, logger, msg, text,
  hostname, created), times as pandas datetimes, ``text`` formatted, window start looked up;
- ``bare SQL (same rows)`` -- ``sqlite3`` ``fetchall()`` of the same columns with the same filter and order
  (``json_extract`` of host.name and omegaml.levelno, ``WHERE json_extract(LogAttributes, '$."omegaml.log.dataset"')
  = '.omega/logs' ORDER BY Timestamp``) into ``pd.DataFrame`` -- what a user would write by hand; the baseline;
- ``bare SQL (plain cols)`` -- reference only: ``SELECT Timestamp, SeverityText, SeverityNumber, ScopeName, Body``
  of all rows, no JSON, no filter, no order.

    python benchmarks/bench_read.py [--rows 1000000 --rounds 3] [--quick]
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
SAME_SQL = ("SELECT Timestamp, SeverityText, SeverityNumber, ScopeName, Body, "
            "json_extract(ResourceAttributes, '$.\"host.name\"'), json_extract(LogAttributes, '$.\"omegaml.levelno\"') "
            "FROM otel_logs WHERE json_extract(LogAttributes, '$.\"omegaml.log.dataset\"') = '.omega/logs' "
            "ORDER BY Timestamp, rowid")
SAME_COLS = ["Timestamp", "SeverityText", "SeverityNumber", "ScopeName", "Body", "host.name", "omegaml.levelno"]
PLAIN_SQL = "SELECT Timestamp, SeverityText, SeverityNumber, ScopeName, Body FROM otel_logs"
PLAIN_COLS = SAME_COLS[:5]


def fill(om, store, rows: int) -> int:
    """Log templates through the real pipeline, then copy them into ``rows`` dataset rows; returns the count."""
    import logging

    om.logger.dataset.ensure()                               # 'log init' (SYSTEM 999) first
    logging.getLogger().setLevel(logging.INFO)
    with om.logger.capture():
        for name, level in (("bench.app", logging.INFO), ("bench.app", logging.WARNING), ("bench.db", logging.INFO),
                            ("celery", logging.INFO), ("omegaml", logging.ERROR)):
            logging.getLogger(name).log(level, "template")
    om.logger.info("template")
    con = sqlite3.connect(store.path)
    templates = con.execute("SELECT * FROM otel_logs WHERE Body = 'template' ORDER BY Timestamp").fetchall()
    t0 = con.execute("SELECT max(Timestamp) FROM otel_logs").fetchone()[0]
    con.execute("DELETE FROM otel_logs WHERE Body = 'template'")
    con.commit()
    con.close()
    assert len(templates) == 6, templates
    have = 1
    step = 10_000   # 10 us apart: 1M rows span 10 s
    chunk = 100_000
    i = 0
    while have < rows:
        batch = []
        for i in range(i, i + min(chunk, rows - have)):
            tpl = templates[i % 6]
            batch.append((t0 + (i + 1) * step,) + tpl[1:7] + (f"processed item {i} for user alice in 0.{i % 997:03d}s",)
                         + tpl[8:])
        i += 1
        store.write("otel_logs", batch)
        have += len(batch)
    return have


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.rounds = 100_000, 2

    home = fresh_home("read")
    import omegaml_otel as om
    from omegaml_otel._internal.stores import default_store

    store = default_store()
    print(f"# read {args.rows:,} log dataset rows, {args.rounds} rounds; {machine()}; load {loadavg()}")
    t = time.perf_counter()
    n = fill(om, store, args.rows)
    print(f"# store filled with {n:,} rows in {time.perf_counter() - t:.1f}s "
          f"({(home / 'telemetry.sqlite').stat().st_size / 1e6:,.0f} MB)")

    con = sqlite3.connect(store.path)
    import pandas as pd

    def reader():
        return om.logger.dataset.get()

    def bare_same():
        return pd.DataFrame(con.execute(SAME_SQL).fetchall(), columns=SAME_COLS)

    def bare_plain():
        return pd.DataFrame(con.execute(PLAIN_SQL).fetchall(), columns=PLAIN_COLS)

    sides = {"dataset.get()": reader, "bare SQL (same rows)": bare_same, "bare SQL (plain cols)": bare_plain}
    names = list(sides)
    times: dict[str, list[float]] = {s: [] for s in names}
    lengths: dict[str, int] = {}
    for s in names:    # warm-up: page cache, first-use imports, provider creation
        lengths[s] = len(sides[s]())
    for r in range(args.rounds):
        for s in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            t = time.perf_counter()
            df = sides[s]()
            times[s].append(time.perf_counter() - t)
            lengths[s] = len(df)
            del df
    df = reader()
    print("# dataset.get() columns:", list(df.columns), "first row:", df.iloc[0][["level", "levelno", "logger", "msg"]]
          .tolist())
    del df
    con.close()

    base = median(times["bare SQL (same rows)"])
    rows, metrics = [], {}
    for s in names:
        ratio = median(times[s]) / base
        tgt = {"dataset.get()": f"<= {TARGET}  {verdict(ratio, TARGET)}", "bare SQL (same rows)": "baseline"}.get(s, "")
        rows.append([s, f"{lengths[s]:,}", median(times[s]), min(times[s]), max(times[s]),
                     lengths[s] / median(times[s]), ratio, tgt])
    print(table(["side", "rows", "median s", "min s", "max s", "rows/s", "ratio vs bare SQL", "target"], rows))
    if lengths["dataset.get()"] != lengths["bare SQL (same rows)"]:
        print(f"# WARNING: row counts differ: {lengths}")
    metrics["reader_s"] = median(times["dataset.get()"])
    metrics["bare_s"] = base
    metrics["plain_s"] = median(times["bare SQL (plain cols)"])
    metrics["ratio_reader"] = metrics["reader_s"] / base
    remove_home(home)
    emit_result("read", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())

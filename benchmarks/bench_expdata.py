"""``exp.data(run='all')`` over 100 runs x 1,000 events vs a bare query of the same rows, same run.

The experiment is filled through the real API (``with exp: exp.log_metric(...)``). The bare side is what a user
would write by hand: one SQL query of the same event rows (experiment, run id, event, time, node, step, key,
value) into a DataFrame, without run numbering or JSON decoding of values.

    python benchmarks/bench_expdata.py [--runs 100 --events 1000 --rounds 3] [--quick]
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
BARE_SQL = (
    "SELECT Timestamp, json_extract(LogAttributes, '$.\"omegaml.run.id\"'), "
    "json_extract(LogAttributes, '$.\"omegaml.event\"'), json_extract(ResourceAttributes, '$.\"host.name\"'), "
    "json_extract(LogAttributes, '$.\"omegaml.step\"'), json_extract(LogAttributes, '$.\"omegaml.key\"'), "
    "json_extract(LogAttributes, '$.\"omegaml.value\"') FROM otel_logs "
    "WHERE ScopeName = 'omegaml.experiment' AND json_extract(LogAttributes, '$.\"omegaml.experiment\"') = ? "
    "AND json_extract(LogAttributes, '$.\"omegaml.run.id\"') != '' ORDER BY Timestamp, rowid")
BARE_COLS = ["dt", "run_id", "event", "node", "step", "key", "value"]


def fill(om, runs: int, events: int, name: str = "bench"):
    """``runs`` runs of experiment ``name`` through the real API, each ``events`` events (start and stop included);
    returns the experiment."""
    exp = om.runtime.experiment(name)
    for r in range(runs):
        with exp:
            for i in range(events - 2):
                exp.log_metric("acc", i / events, step=i)
    return exp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--events", type=int, default=1000, help="events per run, start and stop included")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 runs x 200 events")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.events = 20, 200
    home = fresh_home("expdata")
    import pandas as pd

    import omegaml_otel as om
    from omegaml_otel._internal.stores import default_store

    t = time.perf_counter()
    exp = fill(om, args.runs, args.events)
    print(f"# exp.data(run='all') over {args.runs} runs x {args.events} events, {args.rounds} rounds; {machine()}; "
          f"load {loadavg()}")
    print(f"# filled in {time.perf_counter() - t:.1f}s")
    con = sqlite3.connect(default_store().path)

    def reader():
        return exp.data(run="all")

    def bare():
        return pd.DataFrame(con.execute(BARE_SQL, ("bench",)).fetchall(), columns=BARE_COLS)

    sides = {"exp.data(run='all')": reader, "bare SQL (same rows)": bare}
    names = list(sides)
    times = {s: [] for s in names}
    lengths = {s: len(sides[s]()) for s in names}
    for r in range(args.rounds):
        for s in names[r % 2:] + names[:r % 2]:
            gc.collect()
            t = time.perf_counter()
            sides[s]()
            times[s].append(time.perf_counter() - t)
    expected = args.runs * args.events
    base = median(times["bare SQL (same rows)"])
    rows = [[s, lengths[s], median(times[s]), median(times[s]) / base,
             verdict(median(times[s]) / base, TARGET) if s != names[1] else "baseline"] for s in names]
    print(table(["side", "rows", "median s", "ratio", "target"], rows))
    if lengths[names[0]] != expected or lengths[names[1]] != expected:
        print(f"# ROW COUNT MISMATCH: expected {expected:,}")
        return 1
    emit_result("expdata", {"reader_s": median(times[names[0]]), "bare_s": base,
                            "ratio": median(times[names[0]]) / base})
    remove_home(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())

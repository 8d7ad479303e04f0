"""Retention of the embedded store: bytes per log row, the write cost of ``auto_vacuum=INCREMENTAL``, the cost of a
prune, and what a prune costs a writer in another process.

1. **bytes per row**: N log dataset rows like ``bench_read.py``'s (templates logged through the real pipeline, so
   they carry the real resource, scope and attributes), the store file after a checkpoint divided by N, and where
   the bytes go (``dbstat``: the table, each index; the resource-attribute JSON's share of the table).
2. **writer cost of incremental vacuum**: two stores side by side, one as ``SqliteStore`` creates stores now
   (``auto_vacuum=INCREMENTAL``), one as they were made before (no auto_vacuum); the same 500-row batches of those
   rows written to each in turn; the median batch of each and their ratio. Then the time of one full ``VACUUM`` of
   the N-row store: what a store made before needs once (``omtel prune --vacuum``).
3. **prune**: the N rows back-dated over 40..100 days, then pruned in six steps (older than 90d, 80d, ... 40d), each
   ``SqliteStore.prune`` with its batches, reclaim and checkpoint: rows/s deleted, file size before and after.
4. **cost to a writer**: meanwhile another process writes 100-row batches every 10 ms with ``SqliteStore.write``
   (the export buffer's pattern); the latency of its writes during the prune steps vs during quiet phases of the
   same length, alternated.

    python benchmarks/bench_retention.py [--rows 1000000] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, fresh_home, loadavg, machine, median, pct, remove_home, table  # noqa: E402

DAY_NS = 86_400 * 10**9
WRITER = """
import json, sqlite3, sys, time
from omegaml_otel._internal.stores.sqlite import SqliteStore
path, out, stop = sys.argv[1:4]
rows = sqlite3.connect(path).execute("SELECT * FROM otel_logs ORDER BY rowid DESC LIMIT 100").fetchall()
store, samples = SqliteStore(path), []
import os
while not os.path.exists(stop):
    batch = [(time.time_ns(),) + r[1:] for r in rows]
    t = time.time()
    store.write("otel_logs", batch)
    samples.append((t, time.time() - t))
    time.sleep(0.01)
json.dump(samples, open(out, "w"))
"""


def bytes_per_row(path: Path, rows: int) -> tuple[float, list[list]]:
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    parts = con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name HAVING sum(pgsize) > 8192 "
                        "ORDER BY 2 DESC").fetchall()
    res, body = con.execute("SELECT avg(length(ResourceAttributes)), avg(length(Body)) FROM otel_logs").fetchone()
    con.close()
    out = [[name, size / rows] for name, size in parts]
    out += [["  of which ResourceAttributes JSON", res], ["  of which Body", body]]
    return os.path.getsize(path) / rows, out


def write_cost(sample: list[tuple], rounds: int) -> dict[str, float]:
    """Seconds per 500-row batch into a new (incremental) store and an old-style (no auto_vacuum) store: the same
    batch to both, in turn, the order flipped every batch; medians, so a burst of load elsewhere moves neither."""
    from omegaml_otel._internal.stores.sqlite import SqliteStore

    folder = Path(tempfile.mkdtemp(prefix="omtel-bench-av-"))
    with sqlite3.connect(folder / "none.sqlite") as con:  # WAL before any table: auto_vacuum stays off, as before
        con.execute("PRAGMA journal_mode=WAL")
    stores = {"incremental": SqliteStore(folder / "incremental.sqlite"), "none": SqliteStore(folder / "none.sqlite")}
    batches = [sample[i:i + 500] for i in range(0, len(sample), 500)] * rounds
    spent: dict[str, list[float]] = {k: [] for k in stores}
    for i, batch in enumerate(batches):
        for name in (list(stores) if i % 2 == 0 else list(stores)[::-1]):
            t = time.perf_counter()
            stores[name].write("otel_logs", batch)
            spent[name].append(time.perf_counter() - t)
    sizes = {k: os.path.getsize(s.path) for k, s in stores.items()}
    for s in stores.values():
        s.close()
    remove_home(folder)
    return {f"{k}_rows_per_s": 500 / median(v) for k, v in spent.items()} | {
        "ratio": median(spent["incremental"]) / median(spent["none"]),
        "size_ratio": sizes["incremental"] / sizes["none"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows")
    args = ap.parse_args()
    if args.quick:
        args.rows = 100_000

    home = fresh_home("retention")
    os.environ["OMTEL_RETENTION"] = "off"  # the benchmark prunes when it measures, not in the background
    from bench_read import fill

    import omegaml_otel as om
    from omegaml_otel._internal.stores import default_store

    store = default_store()
    print(f"# retention over {args.rows:,} log dataset rows; {machine()}; load {loadavg()}")
    t = time.perf_counter()
    n = fill(om, store, args.rows)
    print(f"# filled in {time.perf_counter() - t:.1f}s")
    per_row, parts = bytes_per_row(store.path, n)
    print(table(["part", "bytes per row"], [["store file", per_row]] + parts, title="\n## 1. bytes per log row"))

    con = sqlite3.connect(store.path)
    sample = con.execute("SELECT * FROM otel_logs ORDER BY rowid LIMIT 50000").fetchall()
    cost = write_cost(sample, rounds=4)
    print(table(["store", "rows/s"], [["auto_vacuum=INCREMENTAL (new stores)", cost["incremental_rows_per_s"]],
                                      ["no auto_vacuum (stores made before)", cost["none_rows_per_s"]]],
                title="\n## 2. writes, 500-row batches, alternated (median batch)"))
    print(f"# median batch time, incremental / none: {cost['ratio']:.3f}; file size ratio {cost['size_ratio']:.3f}")

    size = os.path.getsize(store.path)
    t = time.perf_counter()
    store.vacuum()  # what a store made before retention existed needs once (omtel prune --vacuum)
    vacuum_s = time.perf_counter() - t
    print(f"\n## 2b. one full vacuum of the store: {vacuum_s:.1f} s for {size / 1e6:,.0f} MB "
          f"({size / 1e6 / vacuum_s:,.0f} MB/s)")

    # back-date: the rows spread evenly over 100 .. 40 days ago, oldest first; the dataset has no reset, so the
    # rows leave the log dataset first (a reset now), as a user's om.logger.reset() would let them
    now = time.time_ns()
    span = 60 * DAY_NS
    con.execute("UPDATE otel_logs SET Timestamp = ? + (rowid * ?)", (now - 100 * DAY_NS, span // max(n, 1)))
    con.commit()
    con.close()
    om.logger.reset()
    size_before = os.path.getsize(store.path)

    stop = Path(home) / "stop"
    out = Path(home) / "writer.json"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store.path), str(out), str(stop)])
    time.sleep(2.0)
    phases: list[tuple[str, float, float]] = []
    deleted, prune_s = 0, 0.0
    for days in (90, 80, 70, 60, 50, 40):
        t0 = time.time()
        result = store.prune(days * 86_400)
        t1 = time.time()
        phases.append(("prune", t0, t1))
        deleted += result.total
        prune_s += t1 - t0
        time.sleep(t1 - t0)  # a quiet phase as long as the prune
        phases.append(("quiet", t1, time.time()))
    stop.touch()
    proc.wait(60)
    samples = json.loads(out.read_text())
    size_after = os.path.getsize(store.path)
    with sqlite3.connect(store.path) as con:
        left = con.execute("SELECT count(*) FROM otel_logs").fetchone()[0]
    lat = {"prune": [], "quiet": []}
    for t, d in samples:
        for kind, a, b in phases:
            if a <= t < b:
                lat[kind].append(d * 1000)
    print(table(["", "value"], [["rows deleted", f"{deleted:,}"], ["prune seconds (6 steps)", prune_s],
                                ["rows deleted per second", deleted / prune_s],
                                ["store file before, MB", size_before / 1e6],
                                ["store file after, MB", size_after / 1e6],
                                ["rows in it after (the writer's, and the reset)", f"{left:,}"]],
                title="\n## 3. prune (batches, reclaim, checkpoint)"))
    print(table(["phase", "writes", "p50 ms", "p99 ms", "max ms"],
                [[k, len(v), median(v), pct(v, 0.99), max(v)] for k, v in lat.items() if v],
                title="\n## 4. a writer in another process: 100-row batches every 10 ms"))
    remove_home(home)
    emit_result("retention", {"bytes_per_row": per_row, "incremental_write_ratio": cost["ratio"],
                              "vacuum_mb_per_s": size / 1e6 / vacuum_s,
                              "prune_rows_per_s": deleted / prune_s, "size_before_mb": size_before / 1e6,
                              "size_after_mb": size_after / 1e6,
                              "writer_p99_ms_prune": pct(lat["prune"], 0.99),
                              "writer_p99_ms_quiet": pct(lat["quiet"], 0.99),
                              "writer_max_ms_prune": max(lat["prune"] or [float("nan")])})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sustained log throughput into the embedded store from two worker processes, with a zero-loss check.

An ``omtel worker`` (prefork, concurrency 2) imports ``benchmarks/bench_tasks.py`` (``OMTEL_IMPORTS=bench_tasks``).
Each round sends two ``bench.log_burst`` tasks at once, each logging N INFO records through Python logging in its
own pool child; both children write the same SQLite file (WAL). Wall time runs from sending the two tasks until
all 2N rows are in ``otel_logs`` (counted with a direct SQLite query; with the embedded default they are there when
``.get()`` returns, since logs are flushed before the result is published). records/s = 2N / wall time.
Two capture paths alternate round by round:

- ``root bridge``  -- the client's logging mode is off: the worker's root-logger LogBridge stores the records;
- ``log dataset``  -- ``om.runtime.mode(logging=True)``: the task's logging bridge stores them, tagged for
  ``om.logger.dataset``.

The worker's console handler (stderr, discarded here) also formats every record, as it does in production.

    python benchmarks/bench_throughput.py [--records 100000 --rounds 3] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_DIR,
    emit_result,
    fresh_home,
    loadavg,
    machine,
    median,
    pythonpath,
    remove_home,
    table,
    verdict,
)

TARGET = 50_000
MODES = ("root bridge", "log dataset")


def count(db: Path, names: list[str]) -> int:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(f"SELECT count(*) FROM otel_logs WHERE ScopeName IN ({','.join('?' * len(names))})",
                           names).fetchone()[0]
    finally:
        con.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000, help="records per task (2 tasks per round)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per capture path")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 x 20,000 per path")
    args = ap.parse_args()
    if args.quick:
        args.records, args.rounds = 20_000, 1

    home = fresh_home("throughput")
    os.environ["OMTEL_IMPORTS"] = "bench_tasks"
    os.environ["PYTHONPATH"] = pythonpath(BENCH_DIR)
    os.chdir(home)  # the filesystem transport writes its control/ folder into the worker's cwd
    db = home / "telemetry.sqlite"
    print(f"# log throughput, 2 tasks x {args.records:,} records at once, {args.rounds} round(s) per path; "
          f"{machine()}; load {loadavg()}")

    import omegaml_otel as om
    from omegaml_otel.worker import worker_process

    n = args.records
    results: dict[str, list[tuple[float, float, int, int, int]]] = {m: [] for m in MODES}
    log = open(home / "worker.log", "w")
    with worker_process(concurrency=2, env=dict(os.environ), stderr=log):
        burst = om.runtime.task("bench.log_burst")
        for w in range(2):   # warm-up: both children import, open the store, create their OTel loggers
            om.runtime.mode(logging=bool(w))
            rs = [burst.delay(2000, name=f"bench.warm.{w}.{i}") for i in range(2)]
            [r.get(timeout=60) for r in rs]
        for r in range(args.rounds):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                om.runtime.mode(logging=(mode == "log dataset"))
                names = [f"bench.burst.{mode.split()[1]}.{r}.{i}" for i in range(2)]
                t0 = time.perf_counter()
                rs = [burst.delay(n, name=name) for name in names]
                out = [res.get(timeout=300, interval=0.01) for res in rs]
                t_got = time.perf_counter()
                stored = count(db, names)
                # zero loss: everything must be stored; give stragglers 10 s before calling it lost
                deadline = time.monotonic() + 10
                while stored < 2 * n and time.monotonic() < deadline:
                    time.sleep(0.05)
                    stored = count(db, names)
                t_stored = time.perf_counter() if stored >= 2 * n else t_got
                pids = len({o["pid"] for o in out})
                results[mode].append((t_stored - t0, t_got - t0, stored, pids, 2 * n))
                print(f"#   {mode:12s} round {r}: {stored:,}/{2 * n:,} rows in {t_stored - t0:.2f}s "
                      f"({stored / (t_stored - t0):,.0f}/s), {pids} pool processes")
        om.runtime.mode(logging=False)
    log.close()

    rows, metrics = [], {}
    for mode in MODES:
        res = results[mode]
        rates = [s / w for w, _, s, _, _ in res]
        lost = sum(e - s for _, _, s, _, e in res)
        rate = median(rates)
        rows.append([mode, len(res), f"{res[0][4]:,}", median([w for w, *_ in res]), rate, min(rates), max(rates),
                     lost, f">= {TARGET:,}  {verdict(rate, TARGET, higher_is_better=True)}"])
        metrics[mode.replace(" ", "_") + "_per_s"] = rate
        metrics[mode.replace(" ", "_") + "_lost"] = lost
    print(table(["path", "rounds", "records/round", "median wall s", "records/s (median)", "min", "max", "lost",
                 "target"], rows))
    remove_home(home)
    emit_result("throughput", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())

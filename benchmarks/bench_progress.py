"""Progress-bar output: N ``sys.stdout.write('\\r...')`` updates of one line through the stream bridge, small N vs
large N, so the cost per update can be seen to stay flat (linear total) instead of growing with N (quadratic).

A ``StreamBridge`` (``omegaml_otel._internal.capture.streams``) on the real embedded pipeline of a temporary
OMTEL_HOME (LoggerProvider -> emitter fast path -> ExportBuffer -> SQLite WAL), writing through to ``/dev/null``
as a console would, gets tqdm-like updates: ``'\\r 45%|#########           | 4500/10000 [it 4500]'`` (about 60
characters), then ``'\\n'`` ends the line, then the log records are flushed into the store. Sides, alternating
round by round, each on a fresh bridge:

- ``2,000 updates``   -- the small side;
- ``20,000 updates``  -- the large side; target: at most 15x the small side (10x is linear);
- ``20,000 print lines`` -- reference: ``print(f'line {i}')`` to the bridge (one record per line), the plain path.

Each side then has exactly one record per progress line in ``otel_logs``, holding the line's final state only;
the store is checked for that.

    python benchmarks/bench_progress.py [--small 2000 --large 20000 --rounds 5] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, fresh_home, loadavg, machine, median, remove_home, table, verdict  # noqa: E402

TARGET = 15.0


def update(i: int, n: int) -> str:
    done = i * 20 // n
    return f"\r{i * 100 // n:3d}%|{'#' * done}{' ' * (20 - done)}| {i}/{n} [it {i}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=2_000, help="updates of the small side")
    ap.add_argument("--large", type=int, default=20_000, help="updates of the large side")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 2

    home = fresh_home("progress")
    from omegaml_otel._internal.capture.streams import StreamBridge
    from omegaml_otel._internal.export.pipeline import pipeline

    tel = pipeline("client")
    provider = tel.logger_provider
    console = open(os.devnull, "w")
    print(f"# '\\r' progress updates through the stream bridge, {args.rounds} rounds per side; {machine()}; "
          f"load {loadavg()}")
    print("# time = N writes + the ending newline + flushing the records into the embedded SQLite store")

    def progress(n: int) -> float:
        bridge = StreamBridge(console, "stdout", provider)
        write = bridge.write
        gc.collect()
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            write(update(i, n))
        write("\n")
        tel.flush_logs()
        return time.perf_counter() - t0

    def lines(n: int) -> float:
        bridge = StreamBridge(console, "stdout", provider)
        gc.collect()
        t0 = time.perf_counter()
        for i in range(n):
            print(f"line {i}", file=bridge)
        tel.flush_logs()
        return time.perf_counter() - t0

    sides = {f"{args.small:,} updates": (progress, args.small), f"{args.large:,} updates": (progress, args.large),
             f"{args.large:,} print lines": (lines, args.large)}
    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    progress(100)  # warm-up: store opened, scope cached
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, n = sides[name]
            times[name].append(fn(n))

    con = sqlite3.connect(home / "telemetry.sqlite")
    finals = dict(con.execute("SELECT Body, count(*) FROM otel_logs WHERE Body LIKE '100%|%' GROUP BY Body"))
    longest = con.execute("SELECT max(length(Body)) FROM otel_logs").fetchone()[0]
    con.close()
    small, large = median(times[names[0]]), median(times[names[1]])
    ratio = large / small
    rows = []
    for name in names:
        n = sides[name][1]
        med = median(times[name])
        rows.append([name, med * 1e3, med / n * 1e6, min(times[name]) * 1e3, max(times[name]) * 1e3,
                     med / small if name != names[2] else float("nan"),
                     f"<= {TARGET:g}  {verdict(ratio, TARGET)}" if name == names[1] else ""])
    print(table(["side", "ms (median)", "us per write", "min ms", "max ms", "ratio vs small", "target"], rows))
    want = {update(n, n)[1:]: args.rounds for n in (args.small, args.large)}
    want[update(100, 100)[1:]] = 1
    print(f"# progress records: {sum(finals.values())} (expected {sum(want.values())}: one per progress line, "
          f"its final state); longest record {longest} characters")
    ok = finals == want
    if not ok:
        print(f"# WARNING: progress records are not one final state per line: {finals}")
    tel.shutdown()
    console.close()
    remove_home(home)
    emit_result("progress", {"small_ms": small * 1e3, "large_ms": large * 1e3, "ratio": ratio,
                             "print_line_us": median(times[names[2]]) / args.large * 1e6,
                             "records_ok": int(ok), "longest_record": longest})
    return 0


if __name__ == "__main__":
    sys.exit(main())

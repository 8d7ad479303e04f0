"""Cost of one ``logger.info(...)`` call: the LogBridge into the embedded store vs a stdlib FileHandler.

Each side is a ``logging.Logger`` (propagate off) whose only handler is

- ``FileHandler``          -- ``logging.FileHandler`` with omega-ml's format
  ``'%(asctime)s - %(name)s - %(levelname)s - %(message)s'`` (the same fields the bridge stores);
- ``FileHandler (bare)``   -- the same without a formatter (``%(message)s`` only), for reference;
- ``LogBridge``            -- ``omegaml_otel._internal.capture.logbridge.LogBridge`` on the real embedded pipeline
  (``export.pipeline.pipeline()`` in a temporary OMTEL_HOME: LoggerProvider -> BufferedLogProcessor ->
  ExportBuffer -> StoreWriter -> SQLite WAL);
- ``stock OTel handler``   -- ``opentelemetry.sdk._logs.LoggingHandler`` (deprecated, still shipped) on the same
  provider, for reference.

Every round times N calls ``log.info('user %s processed item %d', 'alice', i)`` *plus the final flush*
(``FileHandler.flush()``; ``LoggerProvider.force_flush()`` = everything written and committed to SQLite), so the
per-call figure of the OTel sides includes their share of the export work, including the background export thread
(which shares the GIL). Sides alternate round by round; the figure is the median over rounds.

    python benchmarks/bench_logcall.py [--calls 100000 --rounds 5] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import logging
import sqlite3
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, fresh_home, loadavg, machine, median, remove_home, table, verdict  # noqa: E402

TARGET = 1.5
FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=50_000, help="calls per side per round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 10,000 calls")
    args = ap.parse_args()
    if args.quick:
        args.calls, args.rounds = 10_000, 2

    home = fresh_home("logcall")
    from omegaml_otel._internal.capture.logbridge import LogBridge
    from omegaml_otel._internal.export.pipeline import pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from opentelemetry.sdk._logs import LoggingHandler

    tel = pipeline("client")
    provider = tel.logger_provider
    print(f"# one logger.info() call, {args.rounds} rounds x {args.calls:,} calls per side; {machine()}; "
          f"load {loadavg()}")
    print("# per-call time = (N calls + final flush) / N; OTel sides: flush = force_flush() -> rows committed to "
          "the embedded SQLite store")

    def make(name: str, handler: logging.Handler) -> logging.Logger:
        log = logging.getLogger(f"bench.{name}")
        log.handlers[:] = [handler]
        log.propagate = False
        log.setLevel(logging.INFO)
        return log

    file_h = logging.FileHandler(home / "file.log")
    file_h.setFormatter(logging.Formatter(FORMAT))
    bare_h = logging.FileHandler(home / "bare.log")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock_h = LoggingHandler(logger_provider=provider)
    sides = {
        "FileHandler": (make("file", file_h), file_h.flush),
        "FileHandler (bare)": (make("bare", bare_h), bare_h.flush),
        "LogBridge": (make("bridge", LogBridge(logger_provider=provider)), provider.force_flush),
        "stock OTel handler": (make("stock", stock_h), provider.force_flush),
    }
    names = list(sides)
    total: dict[str, list[float]] = {n: [] for n in names}
    flush_part: dict[str, list[float]] = {n: [] for n in names}
    n = args.calls

    def run(name: str, calls: int) -> tuple[float, float]:
        log, flush = sides[name]
        info = log.info
        gc.collect()
        t0 = time.perf_counter()
        for i in range(calls):
            info("user %s processed item %d", "alice", i)
        t1 = time.perf_counter()
        flush()
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1

    for name in names:  # warm-up: store opened, OTel loggers cached, files created
        run(name, 1000)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t, f = run(name, n)
            total[name].append(t / n)
            flush_part[name].append(f / n)

    con = sqlite3.connect(home / "telemetry.sqlite")
    stored = dict(con.execute("SELECT ScopeName, count(*) FROM otel_logs GROUP BY ScopeName").fetchall())
    con.close()
    expected = args.rounds * n + 1000

    base = median(total["FileHandler"])
    rows, result = [], {}
    for name in names:
        us = median(total[name]) * 1e6
        ratio = median(total[name]) / base
        tgt = ""
        if name == "LogBridge":
            tgt = f"<= {TARGET}  {verdict(ratio, TARGET)}"
        elif name == "FileHandler":
            tgt = "baseline"
        rows.append([name, us, median(flush_part[name]) * 1e6, min(total[name]) * 1e6, max(total[name]) * 1e6,
                     ratio, tgt])
        result[name] = us
    print(table(["handler", "us/call", "of which flush", "min", "max", "ratio vs FileHandler", "target"], rows))
    print(f"# rows in otel_logs: LogBridge {stored.get('bench.bridge', 0):,}, stock "
          f"{stored.get('bench.stock', 0):,} (expected {expected:,} each)")
    if stored.get("bench.bridge", 0) != expected:
        print("# WARNING: LogBridge rows missing")
    tel.shutdown()
    remove_home(home)
    emit_result("logcall", {"file_us": result["FileHandler"], "file_bare_us": result["FileHandler (bare)"],
                            "bridge_us": result["LogBridge"], "stock_us": result["stock OTel handler"],
                            "ratio_bridge": result["LogBridge"] / result["FileHandler"],
                            "ratio_bridge_bare": result["LogBridge"] / result["FileHandler (bare)"],
                            "ratio_stock": result["stock OTel handler"] / result["FileHandler"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

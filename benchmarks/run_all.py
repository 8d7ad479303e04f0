"""Run every benchmark (each in its own process and temporary OMTEL_HOME) and summarise ratios vs targets.

    python benchmarks/run_all.py              # each benchmark once, default sizes (about 7 minutes on 2 cores)
    python benchmarks/run_all.py --runs 3     # each benchmark 3 times; the summary shows the median of the runs
    python benchmarks/run_all.py --quick      # smoke run, small sizes (about a minute)
    python benchmarks/run_all.py --only roundtrip,read

A benchmark that exits with code 3 hit the filesystem broker's half-written-message race (docs/performance.md);
it is retried up to twice and the retries are reported.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine, median, table  # noqa: E402

HERE = Path(__file__).resolve().parent
#: name -> script and its arguments
BENCHES = {
    "roundtrip": "bench_roundtrip.py",
    "roundtrip_redis": "bench_roundtrip.py --broker redis",
    "roundtrip_amqp": "bench_roundtrip.py --broker amqp",
    "logcall": "bench_logcall.py",
    "throughput": "bench_throughput.py",
    "read": "bench_read.py",
    "profiler": "bench_profiler.py",
    "expdata": "bench_expdata.py",
    "read_engines": "bench_read_engines.py",
    "collector": "bench_collector.py",
    "progress": "bench_progress.py",
    "bad_day": "bench_bad_day.py",
    "retention": "bench_retention.py",
    "memory": "bench_memory.py",
    "scale": "bench_scale.py",
    "limits": "bench_limits.py",
    "flush": "bench_flush.py",
}
#: (benchmark, metric, label, target, higher is better)
TARGETS = [
    ("roundtrip", "ratio_logging_on", "task round trip, logging on / plain Celery (median ping)", 1.25, False),
    ("roundtrip", "ratio_logging_off", "task round trip, logging off / plain Celery (median ping)", 1.10, False),
    ("roundtrip_redis", "ratio_logging_on", "task round trip on Redis, logging on / plain Celery", 1.25, False),
    ("roundtrip_redis", "ratio_logging_off", "task round trip on Redis, logging off / plain Celery", 1.10, False),
    ("roundtrip_redis", "ratio_stock_otel", "  reference: on Redis, plain Celery under stock OTel / plain", None,
     False),
    ("roundtrip_redis", "ratio_plain_task_logs", "  reference: on Redis, plain Celery, task logs 4 lines / plain",
     None, False),
    ("roundtrip_amqp", "ratio_logging_on", "task round trip on RabbitMQ, logging on / plain Celery", 1.25, False),
    ("roundtrip_amqp", "ratio_logging_off", "task round trip on RabbitMQ, logging off / plain Celery", 1.10, False),
    ("roundtrip_amqp", "ratio_stock_otel", "  reference: on RabbitMQ, plain Celery under stock OTel / plain", None,
     False),
    ("roundtrip_amqp", "ratio_plain_task_logs", "  reference: on RabbitMQ, plain Celery, task logs 4 lines / plain",
     None, False),
    ("logcall", "ratio_bridge", "logger.info via LogBridge incl. flush / FileHandler", 1.5, False),
    ("logcall", "ratio_stock", "  reference: stock OTel LoggingHandler / FileHandler", None, False),
    ("throughput", "root_bridge_per_s", "log records/s into SQLite, 2 workers (root bridge)", 50_000, True),
    ("throughput", "log_dataset_per_s", "log records/s into SQLite, 2 workers (log dataset)", 50_000, True),
    ("read", "ratio_reader", "dataset.get() / bare SQL of the same rows", 1.5, False),
    ("profiler", "share_pct", "profiler CPU at 1 Hz, % of one core", 1.0, False),
    ("expdata", "ratio", "exp.data(run='all'), 100 runs x 1,000 events / bare SQL", 1.5, False),
    ("read_engines", "logs_sqlite_ratio", "dataset.get() / bare SQL, SQLite (engines run)", 1.5, False),
    ("read_engines", "logs_clickhouse_ratio", "dataset.get() / bare query_df, ClickHouse (chdb)", 1.5, False),
    ("read_engines", "logs_ch_vs_sqlite_compat", "  reference: dataset.get() ClickHouse / SQLite", None, False),
    ("read_engines", "expdata_sqlite_ratio", "exp.data() / bare SQL, SQLite (engines run)", 1.5, False),
    ("read_engines", "expdata_clickhouse_ratio", "exp.data() / bare query_df, ClickHouse (chdb)", 1.5, False),
    ("read_engines", "expdata_ch_vs_sqlite_compat", "  reference: exp.data() ClickHouse / SQLite", None, False),
    ("collector", "root_bridge_per_s", "log records/s, 2 workers -> OTLP -> rotel -> ClickHouse (root bridge)",
     20_000, True),
    ("collector", "log_dataset_per_s", "log records/s, 2 workers -> OTLP -> rotel -> ClickHouse (log dataset)",
     20_000, True),
    ("collector", "root_bridge_lost", "  records lost on the collector path (root bridge)", 0, False),
    ("collector", "log_dataset_lost", "  records lost on the collector path (log dataset)", 0, False),
    ("progress", "ratio", "20,000 '\\r' progress updates / 2,000 (10 = linear)", 15, False),
    ("bad_day", "slowdown_corrupt", "time per record into a corrupt store / a healthy one", 3, False),
    ("bad_day", "slowdown_locked", "time per record into a store locked by another process / a healthy one", 3,
     False),
    ("bad_day", "ratio_ping_refused", "ping, max-tasks-per-child 1, collector refusing / store (median)", 2.0, False),
    ("bad_day", "hanging_exit_s", "  reference: exit with a collector that never answers, s (budget 2)", None, False),
    ("memory", "ratio_child_pss_vs_plain", "pool child PSS, omtel worker / plain Celery", 1.5, False),
    ("memory", "ratio_child_pss_vs_stock", "pool child PSS, omtel worker / plain Celery + stock OTel SDK", 1.0, False),
    ("memory", "ratio_child_pss_no_relay_vs_stock", "  reference: pool child PSS, OMTEL_STORE_RELAY=false / stock OTel",
     None, False),
    ("memory", "ratio_startup_vs_plain", "worker start-up to first answered ping, omtel / plain Celery", 1.5, False),
    ("retention", "bytes_per_row", "  reference: embedded store bytes per log row", None, False),
    ("retention", "incremental_write_ratio", "  reference: insert with auto_vacuum=INCREMENTAL / none", None, False),
    ("retention", "prune_rows_per_s", "  reference: rows/s deleted by a prune", None, True),
    ("retention", "writer_p99_ms_prune", "  reference: another process's write p99 during a prune, ms", None, False),
    ("scale", "clickhouse_window_ratio", "dataset.get() on 50M ClickHouse rows / on its result rows only", 1.5, False),
    ("scale", "clickhouse_task_ratio", "get(taskid=) on 50M ClickHouse rows / on its result rows only", 1.5, False),
    ("scale", "clickhouse_recent_ratio", "logs(since=) on 50M ClickHouse rows / on its result rows only", 1.5, False),
    ("scale", "clickhouse_follow_ratio", "logs -f poll on 50M ClickHouse rows / on its result rows only", 1.5, False),
    ("scale", "clickhouse_run_ratio", "exp.data(run=1) on 50M ClickHouse rows / on its result rows only", 1.5, False),
    ("scale", "sqlite_window_ratio", "dataset.get() on 5M SQLite rows / on its result rows only", 1.5, False),
    ("scale", "sqlite_task_ratio", "get(taskid=) on 5M SQLite rows / on its result rows only", 1.5, False),
    ("scale", "sqlite_recent_ratio", "logs(since=) on 5M SQLite rows / on its result rows only", 1.5, False),
    ("scale", "sqlite_follow_ratio", "logs -f poll on 5M SQLite rows / on its result rows only", 1.5, False),
    ("scale", "sqlite_run_ratio", "exp.data(run=1) on 5M SQLite rows / on its result rows only", 1.5, False),
    ("limits", "length_limit_ratio", "  reference: fast-path emit with a value length limit / default limits", None,
     False),
    ("limits", "sdk_ratio", "  reference: emit through the SDK logger / fast path, default limits", None, False),
    ("flush", "ratio_p99", "  reference: flush before a task result, p99, checkpoint thread / inline", None, False),
]


def run_one(name: str, quick: bool, retries: int = 2) -> tuple[dict | None, int]:
    script, *options = BENCHES[name].split()
    cmd = [sys.executable, str(HERE / script), *options] + (["--quick"] if quick else [])
    crashes = 0
    while True:
        print(f"\n$ {' '.join(cmd[1:])}", flush=True)
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        result = None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
        proc.wait()
        print(f"# ({time.monotonic() - t:.0f}s, exit code {proc.returncode})")
        if proc.returncode == 3 and crashes < retries:
            crashes += 1
            continue
        return (result if proc.returncode == 0 else None), crashes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--runs", type=int, default=1, help="run each benchmark this many times; report the median")
    ap.add_argument("--only", default="", help="comma list of: " + ", ".join(BENCHES))
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")

    print(f"# omegaml-otel benchmarks{' (quick)' if args.quick else ''}: {machine()}; load {loadavg()}")
    results: dict[str, list[dict]] = {n: [] for n in names}
    crashes: dict[str, int] = {n: 0 for n in names}
    failed: list[str] = []
    for r in range(args.runs):
        for n in names:
            res, c = run_one(n, args.quick)
            crashes[n] += c
            if res is None:
                failed.append(f"{n} (run {r + 1})")
            else:
                results[n].append(res)

    rows = []
    for bench, metric, label, target, higher in TARGETS:
        values = [res[metric] for res in results.get(bench, []) if metric in res]
        if not values:
            continue
        med = median(values)
        counts = all(isinstance(v, int) for v in values)  # record counts (lost) print as whole numbers
        each = ", ".join(f"{v:,.0f}" if higher or counts else f"{v:.2f}" for v in values)
        if target is None:
            verdict = ""
        else:
            ok = med >= target if higher else med <= target
            verdict = ("meets" if ok else "MISSES") + f" ({'>=' if higher else '<='} {target:,})"
        rows.append([label, f"{med:,.0f}" if higher or counts else f"{med:.2f}", each, verdict])
    print(f"\n# summary: median of {args.runs} run(s); load now {loadavg()}")
    print(table(["measure", "median", "runs", "target"], rows))
    for n, c in crashes.items():
        if c:
            print(f"# {n}: {c} attempt(s) died on the filesystem broker's half-written-message race and were retried")
    if failed:
        print("# FAILED: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

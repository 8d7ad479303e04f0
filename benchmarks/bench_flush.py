"""The flush before a task's result: how long a SQLite write of a ping's log records takes, and how often it is slow.

Two sides, each on its own store file, in alternating blocks of the same run:

- ``checkpoint thread`` -- ``SqliteStore`` as it is: the writing process's checkpoint thread copies the WAL into the
  database (``_Checkpointer``); a commit checkpoints itself only past ``INLINE_CHECKPOINT_PAGES``;
- ``inline``            -- SQLite's default, as before: the commit that takes the WAL past 1000 pages copies them and
  syncs both files itself, in the caller's flush.

Each write is one transaction of 5 log records of a ping's size (the four records of a logging ping and Celery's
'succeeded in' line), a few milliseconds apart as flushes before task results are. What matters is the tail: a
checkpoint's fsyncs land on one in 50 to 100 flushes.

    python benchmarks/bench_flush.py [--rounds 6 --block 500 --gap 0.002] [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, fresh_home, loadavg, machine, median, pct, remove_home, table  # noqa: E402

SIDES = ("checkpoint thread", "inline")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--block", type=int, default=500, help="writes per side per round (sides alternate)")
    ap.add_argument("--gap", type=float, default=0.002, help="seconds between two writes of a side")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 200")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.block = 2, 200

    home = fresh_home("flush")  # before omegaml_otel is imported: settings are read once per process
    from omegaml_otel._internal.stores import schema
    from omegaml_otel._internal.stores.sqlite import SqliteStore

    class InlineCheckpoints(SqliteStore):
        """SQLite's default: the commit past 1000 WAL pages checkpoints; no checkpoint thread."""

        def _open(self, wait):
            conn = super()._open(wait)
            conn.execute("PRAGMA wal_autocheckpoint=1000")
            return conn

        def _checkpoint_soon(self, table, rows):
            pass

    stores = {"checkpoint thread": SqliteStore(home / "thread.sqlite"),
              "inline": InlineCheckpoints(home / "inline.sqlite")}
    attributes = json.dumps({"celery.task_id": "5f0c7f0e-2a4b-4c3e-9d1e-1a2b3c4d5e6f",
                             "celery.task_name": "omegaml.tasks.omega_ping", "omegaml.logging": True})
    resource = json.dumps({"service.name": "omegaml-worker", "host.name": "node-1", "process.pid": 4242,
                           "service.instance.id": "0f8e2c1a-4a5b-4c6d-8e9f-a0b1c2d3e4f5", "telemetry.sdk.language":
                           "python", "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": "1.45.0"})
    value = {"time": 0, "int": 9, "float": 1.0, "list": "[]", "map": attributes,
             "str": "python log: running ping task {'message': 'ping return message', 'args': [], 'kwargs': {}}"}

    def rows() -> list[tuple]:
        now = time.time_ns()
        return [tuple(now if kind == "time" else resource if col == "ResourceAttributes" else value[kind]
                      for col, kind in schema.TABLES[schema.LOGS]) for _ in range(5)]

    print(f"# flush before a task result: {args.rounds} rounds x {args.block} writes of 5 log records per side, "
          f"{args.gap * 1000:g} ms apart; {machine()}; load {loadavg()}")
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(args.rounds):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            store = stores[side]
            for _ in range(args.block):
                t = time.perf_counter()
                store.write(schema.LOGS, rows())
                times[side].append((time.perf_counter() - t) * 1e3)
                time.sleep(args.gap)

    out, result = [], {}
    for side in SIDES:
        ms = times[side]
        slow = sum(1 for v in ms if v > 2.0) / len(ms) * 100
        stats = [median(ms), pct(ms, 0.99), max(ms), sum(ms) / len(ms), slow]
        out.append([side, len(ms), *stats])
        key = "thread" if side == "checkpoint thread" else "inline"
        result.update({f"{key}_median_ms": stats[0], f"{key}_p99_ms": stats[1], f"{key}_max_ms": stats[2],
                       f"{key}_mean_ms": stats[3], f"{key}_over_2ms_pct": stats[4]})
    print(table(["side", "writes", "median ms", "p99 ms", "max ms", "mean ms", "% over 2 ms"], out))
    result["ratio_p99"] = result["thread_p99_ms"] / result["inline_p99_ms"]
    result["ratio_mean"] = result["thread_mean_ms"] / result["inline_mean_ms"]
    print(f"# checkpoint thread / inline: p99 {result['ratio_p99']:.2f}, mean {result['ratio_mean']:.2f}")
    for store in stores.values():
        store.close()
    remove_home(home)
    emit_result("flush", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

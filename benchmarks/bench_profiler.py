"""Profiler cost: CPU time the ProfileSampler uses while sampling at 1 Hz, as a share of one core.

The process does nothing else: it starts a sampler that writes every sample (psutil readings as OTel metrics, the
host's and the process tree's) into the embedded store, sleeps, stops it, and divides the process's CPU time by the
wall time. The sampler's readers, exporters and SQLite writes are all included. The process has ``--children``
sleeping subprocesses, so the task's process tree is walked as for a job with a kernel or a subprocess; their CPU is
~0 and not counted. It also times the process-tree part of one sample on its own.

    python benchmarks/bench_profiler.py [--seconds 60 --interval 1.0 --children 2] [--quick]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, fresh_home, loadavg, machine, remove_home, table, verdict  # noqa: E402

TARGET = 0.01  # share of one core


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--children", type=int, default=2, help="sleeping subprocesses in the process tree")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 s")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 10.0
    home = fresh_home("profiler")
    import omegaml_otel as om
    from omegaml_otel._internal.capture.profiling import ProcessTree
    from omegaml_otel._internal.capture.profiling import pipeline_sampler as sampler
    from omegaml_otel._internal.stores import default_store

    om.setup()
    default_store().logs(limit=1)  # open the store and import everything before measuring
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
                for _ in range(args.children)]
    tree = ProcessTree()
    time.sleep(0.5)  # the children are up (in the tree) before anything is measured
    t0, n = time.perf_counter(), 200
    for _ in range(n):
        tree.sample()
    tree_us = (time.perf_counter() - t0) / n * 1e6
    s = sampler({"omegaml.experiment": "bench", "omegaml.run.id": "0" * 32}, args.interval)
    print(f"# profiler at {args.interval} s for {args.seconds:.0f} s; {machine()}; load {loadavg()}")
    cpu0, wall0 = time.process_time(), time.monotonic()
    s.start()
    time.sleep(args.seconds)
    s.stop()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    samples = len(om.telemetry.metrics(MetricName="system.memory.utilization"))
    tree_points = len(om.telemetry.metrics(MetricName="process.memory.usage"))
    for child in children:
        child.kill()
        child.wait()
    share = cpu / wall
    print(table(["measure", "value", "target"], [
        ["samples stored", samples, ""],
        ["  with the process tree's metrics", tree_points, ""],
        [f"process tree of {args.children + 1} processes, one sample (µs)", tree_us, ""],
        ["CPU time (s)", cpu, ""],
        ["share of one core", f"{share:.3%}", verdict(share, TARGET)],
        ["CPU per sample (ms)", cpu / max(samples, 1) * 1000, ""],
    ]))
    emit_result("profiler", {"share_pct": share * 100, "samples": samples, "cpu_s": cpu, "tree_us": tree_us})
    remove_home(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())

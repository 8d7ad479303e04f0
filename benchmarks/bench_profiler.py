"""Profiler cost: CPU time the ProfileSampler uses while sampling at 1 Hz, as a share of one core.

The process does nothing else: it starts a sampler that writes every sample (psutil readings as OTel metrics) into
the embedded store, sleeps, stops it, and divides the process's CPU time by the wall time. The sampler's readers,
exporters and SQLite writes are all included.

    python benchmarks/bench_profiler.py [--seconds 60 --interval 1.0] [--quick]
"""
from __future__ import annotations

import argparse
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
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 s")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 10.0
    home = fresh_home("profiler")
    import omegaml_otel as om
    from omegaml_otel._internal.capture.profiling import pipeline_sampler as sampler
    from omegaml_otel._internal.stores import default_store

    om.setup()
    default_store().logs(limit=1)  # open the store and import everything before measuring
    s = sampler({"omegaml.experiment": "bench", "omegaml.run.id": "0" * 32}, args.interval)
    print(f"# profiler at {args.interval} s for {args.seconds:.0f} s; {machine()}; load {loadavg()}")
    cpu0, wall0 = time.process_time(), time.monotonic()
    s.start()
    time.sleep(args.seconds)
    s.stop()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    samples = len(om.telemetry.metrics(MetricName="system.memory.utilization"))
    share = cpu / wall
    print(table(["measure", "value", "target"], [
        ["samples stored", samples, ""],
        ["CPU time (s)", cpu, ""],
        ["share of one core", f"{share:.3%}", verdict(share, TARGET)],
        ["CPU per sample (ms)", cpu / max(samples, 1) * 1000, ""],
    ]))
    emit_result("profiler", {"share_pct": share * 100, "samples": samples, "cpu_s": cpu})
    remove_home(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())

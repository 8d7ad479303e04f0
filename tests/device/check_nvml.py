"""Device check (not collected by pytest): NVML metrics from a real GPU reach the store through a real worker.

Run on a machine with an NVIDIA GPU and PyTorch: ``python tests/device/check_nvml.py``. A prefork ``omtel worker``
runs ``device.gpu_burn`` (bf16 matrix products for a few seconds) inside a profiling experiment; the check then
reads the samples back as ``exp.data()`` rows and as ``otel_metrics_gauge`` rows and fails unless the GPU keys are
there with a load above zero while the task ran. It prints what it read, for the issue's note.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ["OMTEL_HOME"] = tempfile.mkdtemp(prefix="omtel-gpu-")
os.environ["OMTEL_IMPORTS"] = "gpu_tasks"
os.environ["OMTEL_PROFILE_INTERVAL"] = "0.5"
here = str(Path(__file__).parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)


def main() -> int:
    import pandas as pd

    import omegaml_otel as om
    from omegaml_otel.worker import worker_process

    with worker_process(concurrency=1, stderr=sys.stderr, timeout=120):
        with om.runtime.experiment("gpu-check", provider="profiling") as exp:
            result = om.runtime.task("device.gpu_burn").delay(seconds=4.0).get(timeout=180)
    print("task result:", json.dumps(result))
    profile = exp.data(event="profile", extra=True)
    gpu = profile[profile.key.str.startswith("gpu_")]
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    print(f"profile rows: {len(profile)}, gpu rows: {len(gpu)}, samples: {profile.step.nunique()}")
    print(gpu[["dt", "node", "step", "key", "value", "taskid"]].to_string())
    gauges = om.telemetry.metrics(MetricName="hw.gpu.utilization", attributes={"omegaml.experiment": "gpu-check"})
    print(f"otel_metrics_gauge hw.gpu.utilization rows: {len(gauges)}")
    print(gauges[["TimeUnix", "MetricName", "Value", "Attributes"]].to_string(max_colwidth=90))
    keys = set(gpu.key)
    expected = {"gpu_load", "gpu_memory_load", "gpu_memory_used", "gpu_memory_total", "gpu_power", "gpu_temperature"}
    loads = [v for values in gpu[gpu.key == "gpu_load"].value for v in values]
    used = [v for values in gpu[gpu.key == "gpu_memory_used"].value for v in values]
    checks = {
        "all six gpu keys": keys == expected,
        "gauge rows in the store": len(gauges) > 0,
        "gpu load above zero during the task": max(loads, default=0) > 0,
        "memory in use above 1 GiB during the task": max(used, default=0) > 2**30,
        "worker samples tagged with the task": bool(set(gpu.taskid) - {""}),
    }
    for what, ok in checks.items():
        print(("PASS " if ok else "FAIL ") + what)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Device check (not collected by pytest): NVML metrics from a real GPU reach the store through a real worker, with
the task's own GPU memory, the `system` row's hardware, and CUDA_VISIBLE_DEVICES as the task sees it.

Run on a machine with an NVIDIA GPU and PyTorch: ``python tests/device/check_nvml.py``. It prints what it read, for
the issue's note, and exits 1 unless every check passes:

1. real NVML, in this process: which devices ``task_gpus()`` reports for CUDA_VISIBLE_DEVICES unset, the first
   GPU's index, its UUID, a UUID prefix, an entry naming nothing, and "" (none);
2. a prefork ``omtel worker``, started with CUDA_VISIBLE_DEVICES set to the first GPU's UUID, runs
   ``device.gpu_burn`` (bf16 matrix products holding a few GiB for a few seconds) inside a profiling experiment;
   the check reads the samples back as ``exp.data()`` rows (the six GPU keys and the task's ``task_cpu_load``,
   ``task_memory_used``, ``task_gpu_memory_used``), as ``hw.gpu.*`` and ``process.gpu.memory.usage`` rows, and the
   ``system`` row right after ``start`` with the GPU's model and memory.

In a container without the host's PID namespace NVML's process ids are not the task's; then there is no
``task_gpu_memory_used`` and the check passes on the logged reason instead, and says so.
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


def visibility() -> dict[str, bool]:
    """task_gpus() under several CUDA_VISIBLE_DEVICES values, against real NVML."""
    from omegaml_otel._internal.capture.hardware import nvml, task_gpus

    devices = nvml().devices
    print("NVML devices:", [(d.hw_id, d.model, d.uuid, d.memory_total, d.parent) for d in devices])
    first = devices[0]
    index = str(first.index)
    cases = {None: devices, index: [d for d in devices if d.index == first.index], first.gpu_uuid: [first],
             first.gpu_uuid[:12]: [first], "99": [], "": []}
    if first.parent is not None:  # MIG: an instance by its own uuid
        cases[first.uuid] = [first]
    ok = {}
    for env, expected in cases.items():
        if env is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = env
        seen = task_gpus()
        print(f"CUDA_VISIBLE_DEVICES={env!r}: {[d.hw_id for d in seen]}")
        ok[f"visible devices for CUDA_VISIBLE_DEVICES={env!r}"] = [d.hw_id for d in seen] == [
            d.hw_id for d in expected]
    os.environ["CUDA_VISIBLE_DEVICES"] = first.gpu_uuid  # the worker below sees the first GPU, named by UUID
    return ok


def main() -> int:
    import pandas as pd

    checks = visibility()
    import omegaml_otel as om
    from omegaml_otel.worker import worker_process

    with worker_process(concurrency=1, stderr=sys.stderr, timeout=120):
        with om.runtime.experiment("gpu-check", provider="profiling") as exp:
            result = om.runtime.task("device.gpu_burn").delay(seconds=4.0).get(timeout=180)
    print("task result:", json.dumps(result))
    df = exp.data()
    print("events:", df.event.drop_duplicates().tolist())
    system = df.value.iloc[1] if len(df) > 1 else {}
    print("system row's hardware:", json.dumps(system.get("hardware"), indent=1))
    profile = exp.data(event="profile", extra=True)
    worker = profile[profile.taskid != ""]
    shown = worker[worker.key.str.startswith(("gpu_", "task_"))]
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    print(f"profile rows: {len(profile)}, worker rows: {len(worker)}, samples: {profile.step.nunique()}")
    print(shown[["dt", "step", "key", "value", "taskid"]].to_string())
    gauges = om.telemetry.metrics(MetricName="hw.gpu.utilization", attributes={"omegaml.experiment": "gpu-check"})
    print(f"hw.gpu.utilization rows: {len(gauges)}")
    print(gauges[["TimeUnix", "MetricName", "Value", "Attributes"]].head(3).to_string(max_colwidth=160))
    own = om.telemetry.metrics(MetricName="process.gpu.memory.usage", attributes={"omegaml.experiment": "gpu-check"})
    print(f"process.gpu.memory.usage rows: {len(own)}")
    print(own[["TimeUnix", "MetricName", "Value", "Attributes"]].tail(3).to_string(max_colwidth=160))
    reasons = om.telemetry.logs(ScopeName="omegaml_otel.profiling")
    print("logged reasons:", reasons.Body.drop_duplicates().tolist() if len(reasons) else [])

    def values(key):
        return [v for values in worker[worker.key == key].value for v in values]

    keys = set(worker.key)
    expected = {"gpu_load", "gpu_memory_load", "gpu_memory_used", "gpu_memory_total", "gpu_power", "gpu_temperature"}
    pid_namespace = len(reasons) and reasons.Body.str.contains("not this machine's").any()
    gpus = (system.get("hardware") or {}).get("gpus", [])
    checks.update({
        "start, then system": df.event.iloc[:2].tolist() == ["start", "system"],
        "system row names the GPU with its memory": bool(gpus) and gpus[0]["memory_total"] > 2**30,
        "all six gpu keys": expected <= keys,
        "gauge rows in the store": len(gauges) > 0,
        "hw.vendor and hw.model on the points": bool(len(gauges)) and all(
            a.get("hw.vendor") == "NVIDIA" and a.get("hw.model") for a in gauges.Attributes),
        "gpu load above zero during the task": max(values("gpu_load"), default=0) > 0,
        "memory in use above 1 GiB during the task": max(values("gpu_memory_used"), default=0) > 2**30,
        "task's own CPU and memory": {"task_cpu_load", "task_memory_used"} <= keys,
        "task's own GPU memory above 1 GiB (or NVML's pids are another namespace's, logged)":
            max(values("task_gpu_memory_used"), default=0) > 2**30 or bool(pid_namespace),
    })
    for what, ok in checks.items():
        print(("PASS " if ok else "FAIL ") + what)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

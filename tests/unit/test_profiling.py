"""ProfileSampler into a temporary SQLite store, the CPU busy-share arithmetic, the task's process tree, and which
GPUs a task sees (CUDA_VISIBLE_DEVICES, MIG)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import namedtuple
from types import SimpleNamespace

import pandas as pd
import pytest
from opentelemetry.sdk.resources import Resource

from omegaml_otel._internal.capture import hardware
from omegaml_otel._internal.capture.hardware import GpuDevice, Nvml, visible_devices
from omegaml_otel._internal.capture.profiling import ProcessTree, ProfileSampler, _busy_percent, cpu_meter
from omegaml_otel._internal.compat.expdata import PROFILE_KEYS, TASK_KEYS, profile_rows
from omegaml_otel._internal.export.store import StoreMetricExporter, StoreWriter
from omegaml_otel.conventions import EXPERIMENT, HOST_NAME, RUN, SERVICE_NAME, TASK_ID

from .helpers import store_url

SYSTEM_METRICS = {
    "system.cpu.utilization", "system.cpu.logical.count", "system.cpu.load_average.1m",
    "system.cpu.load_average.5m", "system.cpu.load_average.15m", "system.memory.utilization", "system.memory.limit",
    "system.memory.usage", "system.filesystem.utilization", "system.filesystem.limit", "process.memory.usage",
}
#: where the platform reports them: CPU frequencies, NVIDIA GPUs where NVML finds one, and the task's CPU share
#: once a sampler has a window (not in its first sample)
OPTIONAL_METRICS = {"system.cpu.frequency", "hw.gpu.utilization", "hw.gpu.memory.usage", "hw.gpu.memory.limit",
                    "hw.gpu.memory.utilization", "hw.power", "hw.temperature", "process.cpu.utilization",
                    "process.gpu.memory.usage"}


def test_start_and_stop_store_exactly_two_samples(tmp_path):
    writer = StoreWriter(store_url(tmp_path))
    sampler = ProfileSampler([StoreMetricExporter(writer)],
                             Resource.create({SERVICE_NAME: "unit-prof", HOST_NAME: "node-1"}),
                             {EXPERIMENT: "x", RUN: "r"}, interval=60)
    try:
        assert not sampler.running
        sampler.start()
        assert sampler.running
        sampler.stop()
        assert not sampler.running
        m = writer.store.metrics()
    finally:
        sampler.stop()
        writer.store.close()
    assert m.TimeUnix.nunique() == 2
    names = set(m.MetricName)
    assert SYSTEM_METRICS <= names and names - SYSTEM_METRICS <= OPTIONAL_METRICS
    for _, sample in m.groupby("TimeUnix"):
        assert SYSTEM_METRICS <= set(sample.MetricName)  # every sample is complete
    assert all(a[EXPERIMENT] == "x" and a[RUN] == "r" for a in m.Attributes)
    assert all(r[SERVICE_NAME] == "unit-prof" and r[HOST_NAME] == "node-1" for r in m.ResourceAttributes)
    assert set(m.ScopeName) == {"omegaml_otel.profiling"}
    units = dict(zip(m.MetricName, m.MetricUnit))
    assert (units["system.cpu.utilization"], units["system.memory.limit"], units["system.cpu.logical.count"]) == \
        ("1", "By", "{cpu}")
    assert units.get("system.cpu.frequency", "Hz") == "Hz"
    util = m[m.MetricName == "system.cpu.utilization"]
    assert util.Value.between(0, 1).all()
    assert {a["cpu.logical_number"] for a in util.Attributes} == {str(i) for i in range(len(util) // 2)}
    mem = m[m.MetricName == "system.memory.utilization"].Value
    assert len(mem) == 2 and mem.between(0, 1).all()
    fs = m[m.MetricName == "system.filesystem.limit"]
    assert all(a["system.filesystem.mountpoint"] == "/" for a in fs.Attributes) and (fs.Value > 0).all()


def test_sampler_without_exporters_starts_and_stops():
    sampler = ProfileSampler([], Resource.create({}), {EXPERIMENT: "x"}, interval=60)
    sampler.start()
    assert sampler.running
    sampler.stop()
    assert not sampler.running and sampler.interval == 60.0


CpuTimes = namedtuple("CpuTimes", "user system idle iowait")
CpuTimesNoIowait = namedtuple("CpuTimesNoIowait", "user system idle")


def test_busy_percent():
    before = CpuTimes(10.0, 10.0, 80.0, 0.0)
    assert _busy_percent(before, CpuTimes(30.0, 20.0, 140.0, 10.0)) == 30.0  # of 100 s, 60 idle + 10 iowait
    assert _busy_percent(before, CpuTimes(40.0, 40.0, 80.0, 0.0)) == 100.0
    assert _busy_percent(before, CpuTimes(10.0, 10.0, 180.0, 0.0)) == 0.0
    assert _busy_percent(before, before) == 0.0  # no time passed: no division by zero
    assert _busy_percent(CpuTimesNoIowait(0.0, 0.0, 0.0), CpuTimesNoIowait(1.0, 0.0, 2.0)) == 33.3
    # counters that went backwards (a CPU taken offline) are clamped, never negative
    assert _busy_percent(before, CpuTimes(5.0, 5.0, 120.0, 0.0)) == 0.0


def test_cpu_meter_is_shared_and_gives_one_share_per_cpu():
    meter = cpu_meter()
    assert cpu_meter() is meter
    shares = meter.percent()
    assert len(shares) >= 1 and all(0.0 <= s <= 100.0 for s in shares)


def test_memory_usage_per_semconv_state_adds_up_to_about_the_total(tmp_path):
    writer = StoreWriter(store_url(tmp_path))
    sampler = ProfileSampler([StoreMetricExporter(writer)], Resource.create({}), {EXPERIMENT: "x"}, interval=60)
    sampler.start()
    sampler.stop()
    m = writer.store.metrics()
    writer.store.close()
    first = m[m.TimeUnix == m.TimeUnix.min()]
    usage = first[first.MetricName == "system.memory.usage"]
    states = {a["system.memory.state"]: v for a, v in zip(usage.Attributes, usage.Value)}
    assert {"used", "free"} <= set(states) <= {"used", "free", "buffers", "cached"}
    total = first[first.MetricName == "system.memory.limit"].Value.iloc[0]
    # psutil's cached includes some shared memory that used also counts: the states overlap by a few percent
    assert 0 < states["used"] < total and sum(states.values()) <= total * 1.05


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_process_tree_counts_children_and_ended_children():
    """A child busy for 0.4 s of CPU that ends before the next sample still counts, in its parent's reaped time;
    a sleeping child adds its memory but no CPU."""
    tree = ProcessTree()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        assert sleeper.pid in tree.pids() and os.getpid() in tree.pids()
        before, t0 = tree.sample(), time.monotonic()
        assert sleeper.pid in before["pids"]
        busy = subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.4\n"
                               "while time.process_time() < end: pass"], timeout=60)
        assert busy.returncode == 0
        after, t1 = tree.sample(), time.monotonic()
        cores_used = sum(after["cpu"].values()) * (os.cpu_count() or 1)  # on average since `before`
        assert cores_used * (t1 - t0) > 0.35  # CPU seconds: the ended child's 0.4 s counted (within the clock)
        assert after["rss"] > before["rss"] / 2 > 0
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.pid not in tree.pids()


def test_process_tree_cpu_share_follows_the_busy_process_and_has_no_first_window():
    """The share matches the process's own CPU clock over the same window (on a crowded machine a busy thread gets
    less than a core, so a fixed figure would not do)."""
    tree = ProcessTree()
    assert tree.sample()["cpu"] is None  # right after construction: no window of 50 ms yet
    time.sleep(0.3)
    idle = tree.sample()["cpu"]
    cpu0, t0 = time.process_time(), time.monotonic()
    _busy(0.3)
    cpu1, t1 = time.process_time(), time.monotonic()
    busy = tree.sample()["cpu"]
    cores = os.cpu_count() or 1
    assert set(idle) == set(busy) == {"user", "system"}
    assert sum(idle.values()) * cores < 0.2  # asleep: well under a fifth of a core
    got = (cpu1 - cpu0) / (t1 - t0)
    assert abs(sum(busy.values()) * cores - got) < 0.1 + 0.2 * got, (busy, got)
    assert sum(busy.values()) * cores <= 1.1  # one busy thread: never more than one core


_BUSY_SAMPLER = """
import json, sys, time
from opentelemetry.sdk.resources import Resource
from omegaml_otel._internal.capture.profiling import ProfileSampler
from omegaml_otel._internal.compat.expdata import profile_rows
from omegaml_otel._internal.export.store import StoreMetricExporter, StoreWriter
from omegaml_otel.conventions import EXPERIMENT, HOST_NAME, RUN

writer = StoreWriter(sys.argv[1])
sampler = ProfileSampler([StoreMetricExporter(writer)], Resource.create({HOST_NAME: "n"}),
                         {EXPERIMENT: "x", RUN: "r"}, interval=0.25)
cpu0, t0 = time.process_time(), time.monotonic()
sampler.start()
end = time.process_time() + 0.8
while time.process_time() < end:
    pass
sampler.stop()
got = 100 * (time.process_time() - cpu0) / (time.monotonic() - t0)  # percent of one core, sampler included
m = writer.store.metrics()
writer.store.close()
df = profile_rows(m, "x", {"r": 1})
print(json.dumps({"keys": list(df.groupby("step").key.apply(list)), "got": got,
                  "load": [float(v) for v in df[df.key == "task_cpu_load"].value],
                  "mem": [v if isinstance(v, int) else repr(v) for v in df[df.key == "task_memory_used"].value]}))
"""


def test_task_keys_in_exp_data_from_a_busy_sampler(tmp_path):
    """The sampler's process metrics become task_cpu_load (percent of one core) and task_memory_used (bytes)
    after the nine seed keys, which stay as they were. Run in a fresh interpreter: the sampler measures its whole
    process, which must hold only the busy thread and the sampler (a test session's process also runs other
    tests' export and checkpoint threads, whose CPU would count as the task's)."""
    out = subprocess.run([sys.executable, "-c", _BUSY_SAMPLER, store_url(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    keys, got, load, mem = result["keys"], result["got"], pd.Series(result["load"]), result["mem"]
    assert all(k[:9] == PROFILE_KEYS and set(k[9:]) <= set(TASK_KEYS) for k in keys)
    assert keys[0][9:] == ["task_memory_used"]  # the first sample: memory, no CPU window yet
    # a window also holds the sampler's and the exporter's own threads, which run beside the busy one on another
    # core: no window can exceed every core; the mean must match the CPU the process really used
    assert len(load) >= 2 and 0 < load.max() <= 100 * os.cpu_count()
    assert abs(load.mean() - got) < 10 + 0.25 * got, (list(load), got)
    assert all(isinstance(v, int) for v in mem) and all(v > 10 * 2**20 for v in mem)


# -- which GPUs a task sees: the pure rules against a device list (this machine has no GPU) -----------------------
G0 = GpuDevice("gpu0", 0, "GPU-aaaa1111-0000", "NVIDIA A100", "GPU-aaaa1111-0000", 80 * 2**30)
G1 = GpuDevice("gpu1", 1, "GPU-bbbb2222-0000", "NVIDIA A100", "GPU-bbbb2222-0000", 80 * 2**30)
#: gpu2 is in MIG mode: two instances, named by MIG uuid or the older MIG-GPU-<uuid>/<gi>/<ci>
M0 = GpuDevice("gpu2.mig0", 2, "MIG-cccc0000-0001", "NVIDIA A100", "GPU-cccc3333-0000", 10 * 2**30, parent="gpu2",
               mig_ids=(1, 0))
M1 = GpuDevice("gpu2.mig1", 2, "MIG-cccc0000-0002", "NVIDIA A100", "GPU-cccc3333-0000", 10 * 2**30, parent="gpu2",
               mig_ids=(2, 0))
DEVICES = [G0, G1, M0, M1]


@pytest.mark.parametrize("env, expected", [
    (None, DEVICES),
    ("1", [G1]),
    ("1,0", [G1, G0]),
    (" 0 , 1 ", [G0, G1]),
    ("GPU-bbbb2222-0000", [G1]),
    ("GPU-bbbb", [G1]),  # a unique uuid prefix, as CUDA accepts
    ("2", [M0, M1]),  # a MIG-mode GPU by index: its instances
    ("GPU-cccc3333-0000", [M0, M1]),
    ("MIG-cccc0000-0002", [M1]),
    ("MIG-GPU-cccc3333-0000/1/0", [M0]),
    ("0,7,1", [G0]),  # CUDA stops at the first entry that names nothing
    ("GPU-", []),  # a prefix of more than one GPU names none
    ("", []),
    ("-1", []),
])
def test_visible_devices(env, expected):
    visible, reasons = visible_devices(DEVICES, env, mig_gpus=[2])
    assert visible == expected
    assert any("gpu2 is in MIG mode" in r for r in reasons)
    hidden = [d.hw_id for d in DEVICES if d not in expected]
    assert bool(hidden) == any("hides" in r and all(h in r for h in hidden) for r in reasons)
    if env in ("0,7,1", "GPU-", "-1"):
        assert any("names no device" in r for r in reasons)


def test_device_attributes_follow_the_hw_registry():
    assert G0.attributes == {"hw.id": "gpu0", "hw.type": "gpu", "hw.name": "NVIDIA A100", "hw.vendor": "NVIDIA",
                             "hw.model": "NVIDIA A100"}
    assert M1.attributes["hw.id"] == "gpu2.mig1" and M1.attributes["hw.parent"] == "gpu2"


class _FakeNvml:
    """Stands in for pynvml ONLY because this machine has no NVIDIA GPU (the device check runs the real one):
    it answers the calls Nvml.read and Nvml.process_memory make, from fixed numbers."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, procs):
        self.procs = procs

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=2 * 2**30, total=10 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=40)

    def nvmlDeviceGetPowerUsage(self, h):
        raise self.NVMLError("Not Supported")

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 50

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return self.procs


def _nvml(procs) -> Nvml:
    n = Nvml.__new__(Nvml)
    n.nvml = _FakeNvml(procs)
    return n


def test_nvml_readings_log_what_a_device_cannot_report(caplog):
    caplog.set_level(logging.INFO, logger="omegaml_otel.profiling")
    hardware._noted.clear()
    nvml = _nvml([])
    whole = nvml.read(G0)
    assert whole["utilization"] == 0.4 and whole["temperature"] == 50.0 and "power" not in whole
    assert whole["memory.utilization"] == 0.2
    assert any("gpu0 (NVIDIA A100) reports no power" in r.message for r in caplog.records)
    assert set(nvml.read(M0)) == {"memory.usage", "memory.limit", "memory.utilization"}  # MIG: memory only


def test_task_gpu_memory_only_for_the_task_and_none_across_pid_namespaces(caplog):
    caplog.set_level(logging.INFO, logger="omegaml_otel.profiling")
    hardware._noted.clear()
    me, other = os.getpid(), os.getppid()
    procs = [SimpleNamespace(pid=me, usedGpuMemory=3 * 2**30), SimpleNamespace(pid=other, usedGpuMemory=2**30)]
    assert _nvml(procs).process_memory(G0, {me}) == 3 * 2**30
    assert _nvml([]).process_memory(G0, {me}) == 0.0  # nothing on the device
    foreign = [SimpleNamespace(pid=2**22 + 17, usedGpuMemory=2**30)]  # above pid_max: another PID namespace's
    assert _nvml(foreign).process_memory(G0, {me}) is None
    assert any("not this machine's" in r.message for r in caplog.records)
    hidden = [SimpleNamespace(pid=me, usedGpuMemory=None)]
    assert _nvml(hidden).process_memory(G0, {me}) is None


def test_gpu_and_task_keys_from_points_of_two_gpus_one_a_mig_instance():
    """The reader's side for GPUs no CI machine has: a whole GPU and a MIG instance (memory only) in one sample."""
    t = pd.Timestamp("2024-03-05 10:00:00")
    base = {EXPERIMENT: "x", RUN: "r", TASK_ID: "t1"}
    points = [("system.cpu.logical.count", 4.0, {}), ("system.memory.utilization", 0.5, {}),
              ("process.cpu.utilization", 0.125, {"cpu.mode": "user"}),
              ("process.cpu.utilization", 0.0625, {"cpu.mode": "system"}),
              ("process.memory.usage", 3e8, {})]
    for gpu in (G0, M1):
        hw = gpu.attributes
        points += [("hw.gpu.memory.usage", 2e9, hw), ("hw.gpu.memory.limit", 8e9, hw),
                   ("hw.gpu.memory.utilization", 0.25, hw), ("process.gpu.memory.usage", 1e9, hw)]
    points += [("hw.gpu.utilization", 0.5, G0.attributes)]  # the MIG instance has none
    m = pd.DataFrame([{"MetricName": n, "Value": v, "TimeUnix": t, "Attributes": {**base, **a},
                       "ResourceAttributes": {HOST_NAME: "n"}} for n, v, a in points])
    row = profile_rows(m, "x", {"r": 1}, extra=True).set_index("key").value
    assert row["task_cpu_load"] == 75.0  # (0.125 + 0.0625) of 4 CPUs = three quarters of one core
    assert row["task_memory_used"] == 300_000_000
    assert row["task_gpu_memory_used"] == [1e9, 1e9] and row["gpu_memory_used"] == [2e9, 2e9]
    assert row["gpu_load"] == [50.0]  # only the whole GPU reports a load


class _FakePynvml:
    """The pynvml module as Nvml() enumerates it, standing in ONLY because this machine has no NVIDIA GPU: gpu0 a
    whole GPU, gpu1 in MIG mode with instances in slots 0 and 2 (slot 1 unused), gpu2 lost (NVML errors)."""

    NVML_DEVICE_MIG_ENABLE = 1

    class NVMLError(Exception):
        pass

    class NVMLError_NotFound(NVMLError):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def nvmlInit(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return "550.54"

    def nvmlDeviceGetCount(self):
        return 3

    def nvmlDeviceGetHandleByIndex(self, i):
        if i == 2:
            raise self.NVMLError("GPU is lost")
        return ("gpu", i)

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA A100"

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h[1]}" if h[0] == "gpu" else f"MIG-{h[1]}-{h[2]}"

    def nvmlDeviceGetMigMode(self, h):
        if h[1] == 0:
            raise self.NVMLError_NotSupported("no MIG on this board")
        return (1, 1)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 3

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, n):
        if n == 1:
            raise self.NVMLError_NotFound("unused slot")
        return ("mig", h[1], n)

    def nvmlDeviceGetGpuInstanceId(self, h):
        return 10 + h[2]

    def nvmlDeviceGetComputeInstanceId(self, h):
        return 0

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=80 * 2**30 if h[0] == "gpu" else 10 * 2**30)


def test_nvml_enumerates_gpus_and_mig_instances_and_reports_a_lost_gpu(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="omegaml_otel.profiling")
    hardware._noted.clear()
    monkeypatch.setitem(sys.modules, "pynvml", _FakePynvml())
    found = Nvml()
    assert [(d.hw_id, d.uuid, d.gpu_uuid, d.parent, d.mig_ids) for d in found.devices] == [
        ("gpu0", "GPU-0", "GPU-0", None, None),
        ("gpu1.mig0", "MIG-1-0", "GPU-1", "gpu1", (10, 0)),
        ("gpu1.mig2", "MIG-1-2", "GPU-1", "gpu1", (12, 0))]
    assert found.mig_gpus == [1] and found.driver == "550.54"
    assert found.devices[1].memory_total == 10 * 2**30
    assert any("gpu2 is not reported: NVML: GPU is lost" in r.message for r in caplog.records)
    visible, _ = visible_devices(found.devices, "GPU-1", found.mig_gpus)
    assert [d.hw_id for d in visible] == ["gpu1.mig0", "gpu1.mig2"]

"""ProfileSampler: the host's CPU, memory, disk and NVIDIA GPUs, and the task's own processes, as OpenTelemetry
metrics, one data point per sample.

Each sampler owns a small MeterProvider whose periodic reader *is* the sampling clock: every collection calls the
observable instruments' callbacks, which read psutil/NVML once, so a sample's time is its data point's time and no
two samples are merged. The first sample is taken at ``start()`` (CPU percentages primed at construction, unlike
psutil's meaningless first reading) and one more at ``stop()``, so even a short task gets two. The reader thread is
a daemon: a forgotten sampler never keeps a process alive. Names and units follow OpenTelemetry's semantic
conventions for system and hardware metrics (``system.cpu.utilization`` as a 0..1 busy share per logical CPU, with
no ``cpu.mode``, which semconv allows for a CPU described without modes; ``system.memory.usage`` per
``system.memory.state``; ``hw.gpu.*`` per ``hw.id``); every point carries ``omegaml.experiment`` and
``omegaml.run.id``, and on a worker the task id. One reader serves every destination (``FanOutMetricExporter``), so
the embedded store and a collector get the very same samples.

The host's figures mix every process on it: on a shared worker (prefork concurrency > 1, other jobs on the node) a
run's CPU says little about the run. So each sample also measures the sampler's own process and its descendants
(``ProcessTree``: on a worker, the pool child running the task and whatever it started) as semconv ``process.*``
metrics, and the GPU memory those processes hold on each device the task can see (``hardware.task_gpus()``).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import psutil
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from omegaml_otel._internal.capture.hardware import GpuDevice, Nvml, note, nvml, task_gpus
from omegaml_otel._internal.export.fanout import FanOutMetricExporter
from omegaml_otel._internal.export.pipeline import pipeline
from omegaml_otel.conventions import (
    CPU_LOGICAL_NUMBER,
    CPU_MODE,
    HW_ID,
    PROCESS_CPU_UTILIZATION,
    PROCESS_GPU_MEMORY_USAGE,
    PROCESS_MEMORY_USAGE,
    PROCESS_PID,
    PROFILING_SCOPE,
)


class ProfileSampler:
    def __init__(self, exporters: Iterable[MetricExporter], resource: Resource, attributes: dict[str, Any],
                 interval: float = 1.0):
        self.attributes = dict(attributes)
        self._interval = float(interval)
        self._exporters = list(exporters)
        self._resource = resource
        self._provider: MeterProvider | None = None
        self._sample: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._gpus = _TaskGpus()
        self._muted = False
        self._cpu = cpu_meter()
        self._tree = ProcessTree()

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        """Change the sampling interval; a running sampler goes on at the new pace (no extra samples)."""
        running = self._provider is not None
        self._muted = True
        try:
            if running:
                self.stop()
            self._interval = float(seconds)
            if running:
                self.start()
        finally:
            self._muted = False

    @property
    def running(self) -> bool:
        return self._provider is not None

    def start(self) -> None:
        if self._provider is not None:
            return
        exporters = self._exporters
        readers = [PeriodicExportingMetricReader(
            exporters[0] if len(exporters) == 1 else FanOutMetricExporter(exporters),
            export_interval_millis=self._interval * 1000)] if exporters else []
        self._provider = MeterProvider(resource=self._resource, metric_readers=readers, shutdown_on_exit=False)
        self._instruments(self._provider.get_meter(PROFILING_SCOPE))
        self._provider.force_flush()  # the first sample, at start

    def stop(self) -> None:
        provider, self._provider = self._provider, None
        if provider is not None:
            provider.shutdown()  # the periodic reader's last collection is the sample at stop

    # -- one reading per collection, shared by all instruments of that collection -----------------------------
    def _read(self, key: str):
        with self._lock:
            if self._sample is None or key in self._sample["_used"]:
                self._sample = _system_sample(self._gpus, self._cpu, self._tree)
                self._sample["_used"] = set()
            self._sample["_used"].add(key)
            return self._sample

    def _instruments(self, meter) -> None:
        a = self.attributes

        def cb(key, fn):
            def callback(options: CallbackOptions):
                return [] if self._muted else fn(self._read(key))
            return [callback]

        meter.create_observable_gauge(
            "system.cpu.utilization", cb("cpu", lambda s: [
                Observation(v / 100, {**a, CPU_LOGICAL_NUMBER: i}) for i, v in enumerate(s["cpu_percent"])]),
            unit="1", description="busy share of each logical CPU")
        meter.create_observable_up_down_counter(
            "system.cpu.logical.count", cb("count", lambda s: [Observation(s["cpu_count"], a)]), unit="{cpu}")
        meter.create_observable_gauge(
            "system.cpu.frequency", cb("freq", lambda s: [
                Observation(v, {**a, CPU_LOGICAL_NUMBER: i}) for i, v in enumerate(s["cpu_freq_hz"])]), unit="Hz")
        for window, idx in (("1m", 0), ("5m", 1), ("15m", 2)):
            meter.create_observable_gauge(
                f"system.cpu.load_average.{window}",
                cb(f"load{window}", lambda s, idx=idx: [Observation(s["loadavg"][idx], a)]), unit="{thread}")
        meter.create_observable_gauge(
            "system.memory.utilization", cb("memutil", lambda s: [Observation(s["memory_percent"] / 100, a)]),
            unit="1")
        meter.create_observable_up_down_counter(
            "system.memory.limit", cb("memlimit", lambda s: [Observation(s["memory_total"], a)]), unit="By")
        meter.create_observable_up_down_counter(
            "system.memory.usage", cb("memusage", lambda s: [
                Observation(v, {**a, "system.memory.state": state}) for state, v in s["memory_states"].items()]),
            unit="By")
        fs = {**a, "system.filesystem.mountpoint": "/"}
        meter.create_observable_gauge(
            "system.filesystem.utilization", cb("diskutil", lambda s: [Observation(s["disk_percent"] / 100, fs)]),
            unit="1")
        meter.create_observable_up_down_counter(
            "system.filesystem.limit", cb("disklimit", lambda s: [Observation(s["disk_total"], fs)]), unit="By")
        self._process_instruments(meter, cb)
        if self._gpus.devices:
            self._gpu_instruments(meter, cb)

    def _process_instruments(self, meter, cb) -> None:
        """The task's own process tree (see ``ProcessTree``), tagged with its root's pid."""
        def tree(s):
            return {**self.attributes, PROCESS_PID: s["process"]["pid"]}

        meter.create_observable_gauge(PROCESS_CPU_UTILIZATION, cb("proccpu", lambda s: [
            Observation(share, {**tree(s), CPU_MODE: mode}) for mode, share in (s["process"]["cpu"] or {}).items()]),
            unit="1", description="CPU of the task's process tree per mode, as a share of all logical CPUs")
        meter.create_observable_up_down_counter(PROCESS_MEMORY_USAGE, cb("procmem", lambda s: [
            Observation(s["process"]["rss"], tree(s))]), unit="By",
            description="resident memory of the task's process tree")

    def _gpu_instruments(self, meter, cb) -> None:
        a = self.attributes

        def per_gpu(field, attrs=lambda g: {}):
            return lambda s: [Observation(g[field], {**a, **g["attributes"], **attrs(g)})
                              for g in s["gpus"] if g.get(field) is not None]

        meter.create_observable_gauge("hw.gpu.utilization", cb("gpuutil", per_gpu(
            "utilization", lambda g: {"hw.gpu.task": "general"})), unit="1")
        meter.create_observable_up_down_counter("hw.gpu.memory.usage", cb("gpumem", per_gpu("memory.usage")),
                                                unit="By")
        meter.create_observable_up_down_counter("hw.gpu.memory.limit", cb("gpumemlimit", per_gpu("memory.limit")),
                                                unit="By")
        meter.create_observable_gauge("hw.gpu.memory.utilization", cb("gpumemutil", per_gpu("memory.utilization")),
                                      unit="1")
        meter.create_observable_gauge("hw.power", cb("gpupower", per_gpu("power")), unit="W")
        meter.create_observable_gauge("hw.temperature", cb("gputemp", per_gpu(
            "temperature", lambda g: {HW_ID: f"{g['attributes'][HW_ID]}_temp", "hw.type": "temperature",
                                      "hw.parent": g["attributes"][HW_ID],
                                      "hw.temperature.sensor_location": "GPU_DIE"})), unit="Cel")
        meter.create_observable_up_down_counter(PROCESS_GPU_MEMORY_USAGE, cb("procgpumem", per_gpu(
            "task_memory", lambda g: {PROCESS_PID: self._tree.pid})), unit="By",
            description="GPU memory the task's process tree uses on the device")


def pipeline_sampler(attributes: dict[str, Any], interval: float) -> ProfileSampler:
    """A sampler that exports where this process's pipeline sends metrics."""
    p = pipeline()
    return ProfileSampler(p.metric_exporters(), p.resource, attributes, interval=interval)


#: CPU percentages over a shorter window than this are noise; older snapshots are used instead
_MIN_CPU_WINDOW = 0.05


class _CpuMeter:
    """Per-CPU busy percentages since the newest snapshot at least 50 ms old, so that a sample taken right
    after another (at a task's stop, say) still measures a meaningful window. One meter per process: a worker
    primes it before forking, so only the very first sample of a fresh process may wait (at most 50 ms)."""

    def __init__(self):
        self._history: deque = deque(maxlen=64)
        self._lock = threading.Lock()
        self._snapshot()

    def _snapshot(self):
        entry = (time.monotonic(), psutil.cpu_times(percpu=True))
        self._history.append(entry)
        return entry

    def percent(self) -> list[float]:
        with self._lock:
            oldest_t = self._history[0][0]
            wait = _MIN_CPU_WINDOW - (time.monotonic() - oldest_t)
            if wait > 0:
                time.sleep(wait)
            now_t, now = self._snapshot()
            base = None
            for t, times in reversed(list(self._history)[:-1]):
                base = times
                if now_t - t >= _MIN_CPU_WINDOW:
                    break
        return [_busy_percent(b, n) for b, n in zip(base, now)]


_meter: _CpuMeter | None = None


def cpu_meter() -> _CpuMeter:
    """The process's CPU meter (created, and so primed, on first call)."""
    global _meter
    if _meter is None:
        _meter = _CpuMeter()
    return _meter


def _busy_percent(before, after) -> float:
    total = sum(after) - sum(before)
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    return round(max(0.0, min(100.0, 100 * (total - idle) / total)), 1) if total > 0 else 0.0


def _system_sample(gpus: _TaskGpus, cpu: _CpuMeter, tree: ProcessTree) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    disk = psutil.disk_usage("/")
    try:
        freqs = [f.current * 1e6 for f in psutil.cpu_freq(percpu=True)]
    except Exception:  # not every platform reports frequencies
        freqs = []
    process = tree.sample()
    return {
        "cpu_percent": cpu.percent(), "cpu_count": psutil.cpu_count(),
        "cpu_freq_hz": freqs, "loadavg": psutil.getloadavg(),
        "memory_percent": vm.percent, "memory_total": vm.total,
        "memory_states": {state: getattr(vm, state) for state in _MEMORY_STATES if hasattr(vm, state)},
        "disk_percent": disk.percent, "disk_total": disk.total, "process": process,
        "gpus": gpus.read(set(process["pids"])),
    }


#: semconv's system.memory.state values that psutil reports (buffers and cached on Linux only)
_MEMORY_STATES = ("used", "free", "buffers", "cached")


class _TaskGpus:
    """The GPUs the task can see (``hardware.task_gpus``): per device its readings and the task's own memory."""

    def __init__(self) -> None:
        self.devices: list[GpuDevice] = task_gpus()
        self._nvml: Nvml | None = nvml() if self.devices else None

    def read(self, pids: set[int]) -> list[dict[str, Any]]:
        out = []
        for device in self.devices:
            try:
                sample = self._nvml.read(device)
            except self._nvml.nvml.NVMLError as exc:  # a device lost mid-run (XID error, reset): the rest go on
                note(f"{device.hw_id} could not be read: {exc}")
                continue
            sample["attributes"] = device.attributes
            sample["task_memory"] = self._nvml.process_memory(device, pids)
            out.append(sample)
        return out


class ProcessTree:
    """CPU and resident memory of this process and its descendants (the pool child running a task, and whatever
    it started), measured between samples.

    CPU is the difference of the tree's cumulative CPU time: for every live process its own time plus that of its
    children it has already reaped, so a subprocess that ends between two samples still counts, in its parent.
    As with the host's CPU, the window is the newest earlier reading at least 50 ms old; a sampler's first sample
    has none yet (it starts right after the task), so it reports memory but no CPU share rather than a made-up one.
    Descendants come from Linux's ``/proc/<pid>/task/<tid>/children`` (a read per process of the tree), elsewhere
    from psutil, which scans every process of the host.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._procs: dict[int, psutil.Process] = {}
        self._history: deque = deque(maxlen=16)
        self._count = psutil.cpu_count() or 1
        self.sample()

    def pids(self) -> list[int]:
        """This process and its live descendants."""
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(_children(pid))
        return out

    def sample(self) -> dict[str, Any]:
        """{pid, pids, rss (bytes), cpu ({mode: share of all logical CPUs}, or None without a window)}."""
        pids = self.pids()
        user = system = 0.0
        rss = 0
        for pid in pids:
            try:
                proc = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
                with proc.oneshot():
                    t = proc.cpu_times()
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):  # ended since the tree was read: in its parent now
                self._procs.pop(pid, None)
                continue
            user += t.user + t.children_user
            system += t.system + t.children_system
        for gone in set(self._procs) - set(pids):
            del self._procs[gone]
        now = time.monotonic()
        cpu = None
        for t0, user0, system0 in reversed(self._history):
            if now - t0 >= _MIN_CPU_WINDOW:
                window = (now - t0) * self._count
                cpu = {"user": max(0.0, user - user0) / window, "system": max(0.0, system - system0) / window}
                break
        self._history.append((now, user, system))
        return {"pid": self.pid, "pids": pids, "rss": rss, "cpu": cpu}


_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children")


def _children(pid: int) -> list[int]:
    """The direct children of ``pid``: a few small reads on Linux instead of psutil's scan of every process."""
    if not _PROC_CHILDREN:
        try:
            return [c.pid for c in psutil.Process(pid).children()]
        except psutil.Error:  # ended meanwhile
            return []
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:  # the process or one of its threads ended meanwhile: its children are read next time
        pass
    return out

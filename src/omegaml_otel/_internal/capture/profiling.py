"""ProfileSampler: CPU, memory, disk and NVIDIA GPU load as OpenTelemetry metrics, one data point per sample.

Each sampler owns a small MeterProvider whose periodic reader *is* the sampling clock: every collection calls the
observable instruments' callbacks, which read psutil/NVML once, so a sample's time is its data point's time and no
two samples are merged. The first sample is taken at ``start()`` (CPU percentages primed at construction, unlike
psutil's meaningless first reading) and one more at ``stop()``, so even a short task gets two. The reader thread is
a daemon: a forgotten sampler never keeps a process alive. Names and units follow OpenTelemetry's semantic
conventions for system and hardware metrics (``system.cpu.utilization`` as a 0..1 share per logical CPU,
``system.memory.limit`` in bytes, ``hw.gpu.*`` per ``hw.id``); every point carries ``omegaml.experiment`` and
``omegaml.run.id``. One reader serves every destination (``FanOutMetricExporter``), so the embedded store and a
collector get the very same samples.
"""
from __future__ import annotations

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

from omegaml_otel._internal.export.fanout import FanOutMetricExporter
from omegaml_otel._internal.export.pipeline import pipeline
from omegaml_otel.conventions import PROFILING_SCOPE


class _Gpus:
    """NVML devices, or none: no driver (NVMLError) means no GPU metrics and no error."""

    def __init__(self):
        self.handles: list[tuple[str, Any]] = []
        try:
            # the optional 'gpu' extra, imported here: without it (or without a driver) the rest is still sampled
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            for i in range(pynvml.nvmlDeviceGetCount()):
                self.handles.append((f"gpu{i}", pynvml.nvmlDeviceGetHandleByIndex(i)))
        except Exception:  # ImportError without the gpu extra, NVMLError without a driver
            self.nvml = None

    def read(self) -> list[dict[str, float]]:
        out = []
        for hw_id, h in self.handles:
            try:
                util = self.nvml.nvmlDeviceGetUtilizationRates(h)
                mem = self.nvml.nvmlDeviceGetMemoryInfo(h)
                sample = {"id": hw_id, "name": self.nvml.nvmlDeviceGetName(h), "utilization": util.gpu / 100,
                          "memory.usage": float(mem.used), "memory.limit": float(mem.total),
                          "memory.utilization": mem.used / mem.total if mem.total else 0.0}
                try:
                    sample["power"] = self.nvml.nvmlDeviceGetPowerUsage(h) / 1000
                    sample["temperature"] = float(self.nvml.nvmlDeviceGetTemperature(h, 0))
                except Exception:  # not every board reports power/temperature
                    pass
                out.append(sample)
            except Exception:
                continue
        return out


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
        self._gpus = _Gpus()
        self._muted = False
        self._cpu = cpu_meter()

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
                self._sample = _system_sample(self._gpus, self._cpu)
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
                Observation(v / 100, {**a, "cpu.logical_number": i}) for i, v in enumerate(s["cpu_percent"])]),
            unit="1", description="busy share of each logical CPU")
        meter.create_observable_up_down_counter(
            "system.cpu.logical.count", cb("count", lambda s: [Observation(s["cpu_count"], a)]), unit="{cpu}")
        meter.create_observable_gauge(
            "system.cpu.frequency", cb("freq", lambda s: [
                Observation(v, {**a, "cpu.logical_number": i}) for i, v in enumerate(s["cpu_freq_hz"])]), unit="Hz")
        for window, idx in (("1m", 0), ("5m", 1), ("15m", 2)):
            meter.create_observable_gauge(
                f"system.cpu.load_average.{window}",
                cb(f"load{window}", lambda s, idx=idx: [Observation(s["loadavg"][idx], a)]), unit="{thread}")
        meter.create_observable_gauge(
            "system.memory.utilization", cb("memutil", lambda s: [Observation(s["memory_percent"] / 100, a)]),
            unit="1")
        meter.create_observable_up_down_counter(
            "system.memory.limit", cb("memlimit", lambda s: [Observation(s["memory_total"], a)]), unit="By")
        fs = {**a, "system.filesystem.mountpoint": "/"}
        meter.create_observable_gauge(
            "system.filesystem.utilization", cb("diskutil", lambda s: [Observation(s["disk_percent"] / 100, fs)]),
            unit="1")
        meter.create_observable_up_down_counter(
            "system.filesystem.limit", cb("disklimit", lambda s: [Observation(s["disk_total"], fs)]), unit="By")
        if self._gpus.handles:
            self._gpu_instruments(meter, cb)

    def _gpu_instruments(self, meter, cb) -> None:
        a = self.attributes

        def per_gpu(field, attrs=lambda g: {}):
            return lambda s: [Observation(g[field], {**a, "hw.id": g["id"], "hw.type": "gpu", "hw.name": g["name"],
                                                     **attrs(g)})
                              for g in s["gpus"] if field in g]

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
            "temperature", lambda g: {"hw.parent": g["id"], "hw.temperature.sensor_location": "GPU_DIE"})),
            unit="Cel")


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


def _system_sample(gpus: _Gpus, cpu: _CpuMeter) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    disk = psutil.disk_usage("/")
    try:
        freqs = [f.current * 1e6 for f in psutil.cpu_freq(percpu=True)]
    except Exception:  # not every platform reports frequencies
        freqs = []
    return {
        "cpu_percent": cpu.percent(), "cpu_count": psutil.cpu_count(),
        "cpu_freq_hz": freqs, "loadavg": psutil.getloadavg(),
        "memory_percent": vm.percent, "memory_total": vm.total,
        "disk_percent": disk.percent, "disk_total": disk.total, "gpus": gpus.read(),
    }

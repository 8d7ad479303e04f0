"""ProfileSampler: CPU, memory, disk and NVIDIA GPU load as OpenTelemetry metrics, one data point per sample.

Each sampler owns a small MeterProvider whose periodic reader *is* the sampling clock: every collection calls the
observable instruments' callbacks, which read psutil/NVML once, so a sample's time is its data point's time and no
two samples are merged. The first sample is taken at ``start()`` (CPU percentages primed at construction, unlike
psutil's meaningless first reading) and one more at ``stop()``, so even a short task gets two. The reader thread is
a daemon: a forgotten sampler never keeps a process alive. Names and units follow the semantic conventions
(otel-notes §4.5); every point carries ``omegaml.experiment`` and ``omegaml.run.id``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import psutil
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

SCOPE = "omegaml_otel.profiling"


class _Gpus:
    """NVML devices, or none: no driver (NVMLError) means no GPU metrics and no error."""

    def __init__(self):
        self.handles: list[tuple[str, Any]] = []
        try:
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
        _cpu_percent()  # prime: the next reading covers the time since now

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        """Change the sampling interval; a running sampler restarts at the new pace without losing a sample."""
        running = self._provider is not None
        if running:
            self.stop()
        self._interval = float(seconds)
        if running:
            self.start()

    @property
    def running(self) -> bool:
        return self._provider is not None

    def start(self) -> None:
        if self._provider is not None:
            return
        readers = [PeriodicExportingMetricReader(e, export_interval_millis=self._interval * 1000)
                   for e in self._exporters]
        self._provider = MeterProvider(resource=self._resource, metric_readers=readers, shutdown_on_exit=False)
        self._instruments(self._provider.get_meter(SCOPE))
        self._provider.force_flush()  # the first sample, at start

    def stop(self) -> None:
        provider, self._provider = self._provider, None
        if provider is not None:
            provider.force_flush()  # the last sample, at stop
            provider.shutdown()

    # -- one reading per collection, shared by all instruments of that collection -----------------------------
    def _read(self, key: str):
        with self._lock:
            if self._sample is None or key in self._sample["_used"]:
                self._sample = _system_sample(self._gpus)
                self._sample["_used"] = set()
            self._sample["_used"].add(key)
            return self._sample

    def _instruments(self, meter) -> None:
        a = self.attributes

        def cb(key, fn):
            def callback(options: CallbackOptions):
                return fn(self._read(key))
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


#: psutil's CPU percentages compare with the previous call; closer than this they are noise (often all 0.0)
_MIN_CPU_WINDOW = 0.05
_last_cpu_call = 0.0


def _cpu_percent() -> list[float]:
    global _last_cpu_call
    wait = _MIN_CPU_WINDOW - (time.monotonic() - _last_cpu_call)
    if wait > 0:
        time.sleep(wait)  # only right after priming: at most 50 ms, once per sampler start
    _last_cpu_call = time.monotonic()
    return psutil.cpu_percent(percpu=True)


def _system_sample(gpus: _Gpus) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    disk = psutil.disk_usage("/")
    try:
        freqs = [f.current * 1e6 for f in psutil.cpu_freq(percpu=True)]
    except Exception:  # not every platform reports frequencies
        freqs = []
    return {
        "cpu_percent": _cpu_percent(), "cpu_count": psutil.cpu_count(),
        "cpu_freq_hz": freqs, "loadavg": psutil.getloadavg(),
        "memory_percent": vm.percent, "memory_total": vm.total,
        "disk_percent": disk.percent, "disk_total": disk.total, "gpus": gpus.read(),
    }

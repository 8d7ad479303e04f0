"""What a run runs on, and which GPUs a task can see.

Two questions users of peers keep asking (MLflow #15711 hardware per run, #13398 only the job's GPUs, #14214 MIG):

- ``system_info()`` is the value of the ``system`` event: omega-ml's ``log_system()`` (platform, Python, packages)
  plus the hardware: CPU model and count, RAM, and the GPUs this process can see with their model and memory.
- ``visible_devices()`` narrows NVML's devices to those ``CUDA_VISIBLE_DEVICES`` names, by index, by UUID (or a
  unique UUID prefix) or by MIG UUID, stopping at the first entry that names nothing, as CUDA does. A GPU in MIG
  mode is reported as its MIG instances: NVML measures memory per instance, while utilization, power and
  temperature exist only for the whole board (and no instance's task sees the board). Every device left out, and
  every reading a device cannot give, is logged once per process with its reason; nothing is skipped silently.

Device ids follow the semantic conventions' ``hw.*`` registry: ``hw.id`` is ``gpu<NVML index>`` (a MIG instance
``gpu<index>.mig<n>``, with ``hw.parent`` its GPU), unique on the host whatever the task's own CUDA numbering is.
NVML is the optional ``gpu`` extra; without it, or without a driver, there are simply no GPUs.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import pathlib
import platform
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import psutil

from omegaml_otel.settings import cuda_visible_devices

_log = logging.getLogger("omegaml_otel.profiling")
_noted: set[str] = set()


def note(reason: str, level: int = logging.INFO) -> None:
    """Log why something is not reported, once per process (a sampler runs per task; the reason does not change)."""
    if reason not in _noted:
        _noted.add(reason)
        _log.log(level, reason)


@dataclass(frozen=True)
class GpuDevice:
    """One device a task may run on: a whole GPU, or one MIG instance of a GPU in MIG mode."""

    hw_id: str
    #: NVML index of the GPU (for a MIG instance: of its GPU)
    index: int
    #: GPU-... for a GPU, MIG-... for a MIG instance
    uuid: str
    model: str
    #: the uuid of the whole GPU (a MIG instance's GPU)
    gpu_uuid: str
    memory_total: int = 0
    #: hw_id of the GPU a MIG instance belongs to
    parent: str | None = None
    #: (GPU instance id, compute instance id) of a MIG instance, for the older MIG-GPU-<uuid>/<gi>/<ci> names
    mig_ids: tuple[int, int] | None = None
    vendor: str = "NVIDIA"
    handle: Any = field(default=None, compare=False, repr=False)

    @property
    def attributes(self) -> dict[str, str]:
        """The semconv ``hw.*`` attributes of this device's data points."""
        attrs = {"hw.id": self.hw_id, "hw.type": "gpu", "hw.name": self.model, "hw.vendor": self.vendor,
                 "hw.model": self.model}
        if self.parent is not None:
            attrs["hw.parent"] = self.parent
        return attrs


def visible_devices(devices: Sequence[GpuDevice], cuda_visible: str | None,
                    mig_gpus: Iterable[int] = ()) -> tuple[list[GpuDevice], list[str]]:
    """The devices ``cuda_visible`` (``CUDA_VISIBLE_DEVICES``) lets a process use, and why others are left out.

    ``devices`` are the leaves NVML reports: whole GPUs, and the MIG instances of GPUs in MIG mode (``mig_gpus``:
    their uuids and indexes are still valid names, naming all of the GPU's instances). Unset means every device;
    an entry that names no device ends the list, as in CUDA ("" or "-1" therefore means none).
    """
    reasons = [f"gpu{i} is in MIG mode: its MIG instances are reported, memory only (NVML has no utilization, "
               f"power or temperature per instance)" for i in sorted(mig_gpus)]
    if cuda_visible is None:
        return list(devices), reasons
    chosen: list[GpuDevice] = []
    for entry in (e.strip() for e in cuda_visible.split(",")):
        found = _named(devices, entry)
        if not found:
            reasons.append(f"CUDA_VISIBLE_DEVICES={cuda_visible!r}: {entry!r} names no device, so CUDA ignores it "
                           "and every entry after it; only the devices before it are reported")
            break
        chosen.extend(d for d in found if d not in chosen)
    hidden = [d.hw_id for d in devices if d not in chosen]
    if hidden:
        reasons.append(f"CUDA_VISIBLE_DEVICES={cuda_visible!r} hides {', '.join(hidden)} from this process; "
                       "they are not reported")
    return chosen, reasons


def _named(devices: Sequence[GpuDevice], entry: str) -> list[GpuDevice]:
    """The devices one CUDA_VISIBLE_DEVICES entry names (a GPU's index or uuid also names its MIG instances)."""
    if entry.isdigit():
        return [d for d in devices if d.index == int(entry)]
    if entry.startswith("MIG-GPU-"):  # the CUDA 11.0 form MIG-GPU-<uuid>/<gi>/<ci>
        gpu, _, ids = entry[4:].partition("/")
        return [d for d in devices if d.mig_ids is not None and d.gpu_uuid == gpu and "%d/%d" % d.mig_ids == ids]
    if entry.startswith("GPU-"):
        def key(d: GpuDevice) -> str:
            return d.gpu_uuid
    elif entry.startswith("MIG-"):
        def key(d: GpuDevice) -> str:
            return d.uuid if d.parent is not None else ""
    else:
        return []
    names = {key(d) for d in devices if key(d).startswith(entry)}  # CUDA accepts a unique prefix of a uuid
    if len(names) != 1:
        return []
    name = names.pop()
    return [d for d in devices if key(d) == name]


class Nvml:
    """NVML's devices on this host, found once per process (NVML handles do not survive a fork)."""

    def __init__(self) -> None:
        self.devices: list[GpuDevice] = []
        self.mig_gpus: list[int] = []
        self.driver = ""
        self.nvml: Any = None
        try:
            # the optional 'gpu' extra, imported here: without it (or without a driver) the rest is still sampled
            import pynvml

            pynvml.nvmlInit()
            self.driver = _text(pynvml.nvmlSystemGetDriverVersion())
            count = pynvml.nvmlDeviceGetCount()
        except Exception as exc:  # ImportError without the gpu extra, NVMLError without a driver
            note(f"no NVIDIA GPUs are reported: {type(exc).__name__}: {exc}", logging.DEBUG)  # the usual case
            return
        self.nvml = pynvml
        for i in range(count):
            try:
                self._add(i)
            except pynvml.NVMLError as exc:  # a lost GPU or one this user may not query: the others are reported
                note(f"gpu{i} is not reported: NVML: {exc}", logging.WARNING)

    def _add(self, i: int) -> None:
        handle = self.nvml.nvmlDeviceGetHandleByIndex(i)
        model, uuid = _text(self.nvml.nvmlDeviceGetName(handle)), _text(self.nvml.nvmlDeviceGetUUID(handle))
        if self._mig_mode(handle):
            self.mig_gpus.append(i)
            self.devices.extend(self._mig_instances(i, handle, model, uuid))
        else:
            self.devices.append(GpuDevice(f"gpu{i}", i, uuid, model, uuid, self._memory_total(handle), handle=handle))

    def _mig_mode(self, handle) -> bool:
        try:
            current, _pending = self.nvml.nvmlDeviceGetMigMode(handle)
        except self.nvml.NVMLError_NotSupported:  # a board without MIG
            return False
        return current == self.nvml.NVML_DEVICE_MIG_ENABLE

    def _mig_instances(self, index: int, handle, model: str, gpu_uuid: str) -> list[GpuDevice]:
        out = []
        for n in range(self.nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = self.nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, n)
            except self.nvml.NVMLError_NotFound:  # an unused slot: fewer instances are configured than fit
                continue
            ids = (self.nvml.nvmlDeviceGetGpuInstanceId(mig), self.nvml.nvmlDeviceGetComputeInstanceId(mig))
            out.append(GpuDevice(f"gpu{index}.mig{n}", index, _text(self.nvml.nvmlDeviceGetUUID(mig)), model, gpu_uuid,
                                 self._memory_total(mig), parent=f"gpu{index}", mig_ids=ids, handle=mig))
        return out

    def _memory_total(self, handle) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(handle).total)

    def read(self, device: GpuDevice) -> dict[str, float]:
        """One device's load, memory, power and temperature, whichever of them it reports."""
        nvml, h = self.nvml, device.handle
        out: dict[str, float] = {}
        mem = nvml.nvmlDeviceGetMemoryInfo(h)
        out.update({"memory.usage": float(mem.used), "memory.limit": float(mem.total),
                    "memory.utilization": mem.used / mem.total if mem.total else 0.0})
        if device.parent is not None:  # a MIG instance: memory only (noted in visible_devices' reasons)
            return out
        for key, read in (("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100),
                          ("power", lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000),
                          ("temperature", lambda: float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)))):
            try:
                out[key] = read()
            except nvml.NVMLError as exc:  # not every board reports power or temperature
                note(f"{device.hw_id} ({device.model}) reports no {key}: {exc}")
        return out

    def process_memory(self, device: GpuDevice, pids: set[int]) -> float | None:
        """GPU memory the processes ``pids`` use on ``device``; None when NVML cannot say whose it is."""
        try:
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(device.handle)
        except self.nvml.NVMLError as exc:
            note(f"{device.hw_id}: NVML lists no processes ({exc}); task_gpu_memory_used is not reported")
            return None
        if procs and not any(psutil.pid_exists(p.pid) for p in procs):
            note(f"{device.hw_id}: NVML's process ids are not this machine's (a container without the host's PID "
                 "namespace, e.g. docker without --pid=host); task_gpu_memory_used is not reported")
            return None
        mine = [p.usedGpuMemory for p in procs if p.pid in pids]
        if any(m is None for m in mine):
            note(f"{device.hw_id}: NVML gives no per-process memory here; task_gpu_memory_used is not reported")
            return None
        return float(sum(mine))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_nvml: tuple[int, Nvml] | None = None


def nvml() -> Nvml:
    """This process's NVML devices (found on first use, again after a fork)."""
    global _nvml
    if _nvml is None or _nvml[0] != os.getpid():
        _nvml = (os.getpid(), Nvml())
    return _nvml[1]


def task_gpus() -> list[GpuDevice]:
    """The GPUs this process may use now (``CUDA_VISIBLE_DEVICES`` as it is set at this moment)."""
    found = nvml()
    devices, reasons = visible_devices(found.devices, cuda_visible_devices(), found.mig_gpus)
    for reason in reasons:
        note(reason)
    return devices


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what the platform module knows, maybe '')."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor()


def hardware_info(gpus: Sequence[GpuDevice]) -> dict[str, Any]:
    """CPU model and counts, RAM, and the given GPUs with model and memory."""
    return {
        "cpu_model": cpu_model(), "cpu_count": psutil.cpu_count(), "cpu_physical_count": psutil.cpu_count(False),
        "memory_total": psutil.virtual_memory().total,
        "gpus": [{"hw.id": d.hw_id, "vendor": d.vendor, "model": d.model, "uuid": d.uuid,
                  "memory_total": d.memory_total, **({"parent": d.parent} if d.parent else {})} for d in gpus],
        "gpu_driver": nvml().driver if gpus else "",
    }


def system_info() -> dict[str, Any]:
    """The ``system`` event's value: omega-ml's platform, Python and packages, and this process's hardware."""
    return {
        "platform": platform.uname()._asdict(),
        "python": f"{platform.python_implementation()}-{platform.python_version()}",
        "packages": list(_packages()),
        "hardware": hardware_info(task_gpus()),
    }


@lru_cache(maxsize=1)
def _packages() -> tuple[str, ...]:
    """Installed distributions as ``name==version``, read once per process (a package installed into a running
    process shows from its next process on). Every profiled run's start logs them; a worker reads them before its
    pool forks (``warm_packages``), so that no child's first profiled task pays for it."""
    return tuple(sorted(_name_version(d) for d in importlib.metadata.distributions()))


def warm_packages() -> None:
    """Read the package list now, in a process that is about to fork workers: the children inherit it."""
    _packages()


def _name_version(dist: importlib.metadata.Distribution) -> str:
    """``Name==Version`` from the metadata file's first header lines. ``dist.metadata`` parses the whole file
    with the email parser (long descriptions included): 0.5 ms per package, 50 ms for 100, against 12 ms here."""
    name = version = None
    for line in _header_lines(dist):
        if not line.strip():  # the headers end at the first empty line
            break
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
        if name and version:
            return f"{name}=={version}"
    return f"{dist.metadata['Name']}=={dist.version}"  # no usual metadata file: the parser knows the other forms


def _header_lines(dist: importlib.metadata.Distribution) -> Iterator[str]:
    """The metadata file's lines, read as they are needed. A worker reads the package list before its pool forks:
    reading whole files (long descriptions of 100 KB and more) left the main process's heap larger by about 1 MB,
    which every pool child then shares (docs/performance.md, 12). An installed distribution is a folder
    (``PathDistribution``, whose ``_path`` names it); any other kind is read whole."""
    folder = getattr(dist, "_path", None)
    for name in ("METADATA", "PKG-INFO"):
        if isinstance(folder, pathlib.Path):
            try:
                with open(folder / name, encoding="utf-8", errors="replace") as fh:
                    yield from fh
                return
            except OSError:
                continue
        text = dist.read_text(name)
        if text:
            yield from text.splitlines()
            return

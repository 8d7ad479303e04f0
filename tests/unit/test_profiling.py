"""ProfileSampler into a temporary SQLite store, and the CPU busy-share arithmetic."""
from __future__ import annotations

from collections import namedtuple

from opentelemetry.sdk.resources import Resource

from omegaml_otel._internal.capture.profiling import ProfileSampler, _busy_percent, cpu_meter
from omegaml_otel._internal.export.store import StoreMetricExporter, StoreWriter
from omegaml_otel.conventions import EXPERIMENT, HOST_NAME, RUN, SERVICE_NAME

from .helpers import store_url

SYSTEM_METRICS = {
    "system.cpu.utilization", "system.cpu.logical.count", "system.cpu.load_average.1m",
    "system.cpu.load_average.5m", "system.cpu.load_average.15m", "system.memory.utilization", "system.memory.limit",
    "system.filesystem.utilization", "system.filesystem.limit",
}
#: where the platform reports them: CPU frequencies, and NVIDIA GPUs where NVML finds one
OPTIONAL_METRICS = {"system.cpu.frequency", "hw.gpu.utilization", "hw.gpu.memory.usage", "hw.gpu.memory.limit",
                    "hw.gpu.memory.utilization", "hw.power", "hw.temperature"}


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

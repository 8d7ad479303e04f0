"""Experiments: omega-ml's tracking tests (omegaml-behaviour §5.3) and the seed's profiling example with ping."""
from __future__ import annotations

import platform
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pandas as pd
import pytest

from omegaml_otel._internal.compat.expdata import COLUMNS, GPU_KEYS, PROFILE_KEYS, TASK_KEYS


def _has_nvidia_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_seed_profiling_with_ping(worker, om):
    name = _name("perf")
    with om.runtime.experiment(name, provider="profiling") as exp:
        om.runtime.ping(fox="bar")
    df = exp.data()
    assert list(df.columns) == COLUMNS
    assert set(df.run) == {1}
    assert df.event.iloc[0] == "start" and df.event.iloc[-1] == "stop"
    call = df[df.event == "task_call"].iloc[0]
    assert call.key == "omegaml.tasks.omega_ping" and call.value == {"args": [], "kwargs": {"fox": "bar"}}
    success = df[df.event == "task_success"].iloc[0]
    assert success.value["result"]["message"] == "ping return message"
    profile = df[df.event == "profile"]
    samples = profile.groupby("step", sort=True).key.apply(list)
    assert len(samples) >= 4  # client and worker each sample at start and at stop
    keys = PROFILE_KEYS + GPU_KEYS if _has_nvidia_gpu() else PROFILE_KEYS
    # the seed's nine keys (and the GPU keys) unchanged, then the task's own (tests/test_task_profiling.py)
    assert all(sample[:len(keys)] == keys and set(sample[len(keys):]) <= set(TASK_KEYS) for sample in samples)
    row = profile.set_index("key").value
    assert 0 < row["memory_load"].iloc[0] <= 100 and row["memory_total"].iloc[0] > 2**20
    assert len(row["cpu_load"].iloc[0]) == row["cpu_count"].iloc[0]
    assert all(0 <= x <= 100 for x in row["cpu_load"].iloc[0])
    assert len(row["cpu_avg"].iloc[0]) == 3 and 0 < row["disk_use"].iloc[0] <= 100
    gpu_keys = {k for k in profile.key if k.startswith("gpu_")}
    if _has_nvidia_gpu():
        assert gpu_keys == set(GPU_KEYS)
        assert len(om.telemetry.metrics(MetricName="hw.gpu.utilization",
                                        attributes={"omegaml.experiment": name}))
    else:
        assert not gpu_keys  # no NVML here: no GPU keys, and no error
    # the task's samples are tagged with the task id
    worker_samples = exp.data(event="profile", extra=True)
    assert set(worker_samples.taskid) - {""} == {success.value["task_id"]}
    # again: run 2, and both runs side by side
    with om.runtime.experiment(name, provider="profiling"):
        om.runtime.ping()
    both = exp.data(run="all")
    assert set(both.run) == {1, 2}
    assert (both[both.event == "start"].run.tolist()) == [1, 2]


def test_task_span_is_child_of_run_span(worker, om):
    name = _name("spans")
    with om.runtime.experiment(name) as exp:
        result = om.runtime.ping(wait=False)
        result.get(timeout=10)
    run_id = exp.data(extra=True).run_id.iloc[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = om.telemetry.spans(TraceId=run_id)
        if len(spans) >= 3:
            break
        time.sleep(0.1)
    names = dict(zip(spans.SpanName, spans.SpanId))
    parents = dict(zip(spans.SpanName, spans.ParentSpanId))
    assert parents["apply_async/omegaml.tasks.omega_ping"] == names[f"experiment/{name}"]
    assert parents["run/omegaml.tasks.omega_ping"] == names["apply_async/omegaml.tasks.omega_ping"]


def test_failing_task_in_experiment(worker, om):
    name = _name("fail")
    with om.runtime.experiment(name) as exp:
        with pytest.raises(RuntimeError):
            om.runtime.ping(exception=True)
    df = exp.data()
    failure = df[df.event == "task_failure"]
    assert len(failure) == 1 and "intentional exception" in failure.value.iloc[0]["exception"]
    task_id = failure.value.iloc[0]["task_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = om.telemetry.spans(attributes={"messaging.message.id": task_id}, SpanKind="Consumer")
        if len(spans):
            break
        time.sleep(0.1)
    assert spans.StatusCode.iloc[0] == "Error"


def test_clear(om):
    exp = om.runtime.experiment(_name("clear"))
    with exp:
        exp.log_metric("accuracy", 0.98)
    assert len(exp.data()) == 3
    with pytest.raises(AssertionError):
        exp.clear()
    exp.clear(force=True)
    assert exp.data() is None or len(exp.data(run="all")) == 0


def test_ensure_active(om):
    name = _name("active")
    exp = om.runtime.experiment(name)
    with pytest.raises(ValueError, match="no active run"):
        exp.log_param("x", 1)
    run = exp.start()
    assert run == 1
    exp.log_param("x", 1)
    assert len(exp.data(run=run)) == 2
    fresh = om.runtime.experiment(name)
    with pytest.raises(ValueError):
        fresh.log_param("y", 2)
    fresh.use()
    fresh.log_param("y", 2)
    fresh.stop()
    assert len(fresh.data(run=run)) == 4
    with fresh:
        fresh.log_param("z", 3)
    df = fresh.data()
    assert set(df.event) == {"start", "stop", "param"} and len(df) == 3 and set(df.run) == {run + 1}


def test_empty_experiment_and_explicit_logging(om):
    exp = om.runtime.experiment(_name("empty"))
    with exp:
        pass
    assert len(exp.data(event="metric")) == 0
    assert list(exp.data().event) == ["start", "stop"]
    with exp:
        exp.log_metric("acc", 0.5, step=3)
    metric = exp.data(event="metric")
    assert len(metric) == 1 and metric.step.iloc[0] == 3 and metric.value.iloc[0] == 0.5


def test_artifacts(om):
    exp = om.runtime.experiment(_name("art"))
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    with exp:
        exp.log_artifact(dict(test="data"), "foo")
        exp.log_artifact(frame, "frame")
        exp.log_data("Y", pd.Series(range(10)))
    assert exp.restore_artifacts("foo")[0] == {"test": "data"}
    value = exp.data(key="foo").iloc[0].value
    assert exp.restore_artifacts(value=value)[0] == {"test": "data"}
    pd.testing.assert_frame_equal(exp.restore_artifacts("frame")[0], frame)
    assert len(exp.restore_data("Y", run="*")) == 10


def test_notrack(worker, om):
    exp = om.runtime.experiment(_name("notrack"), provider="notrack")
    with exp:
        exp.log_metric("x", 1)
        om.runtime.ping()
    assert exp.data() is None


def test_log_system(om):
    exp = om.runtime.experiment(_name("system"))
    with exp:
        exp.log_system()
    row = exp.data(key="system").iloc[0]
    assert row.value["platform"] == platform.uname()._asdict()
    from omegaml_otel.settings import settings
    assert row.node == settings().hostname


def test_profiling_interval_and_provider_kept(om):
    name = _name("proftest")
    with om.runtime.experiment(name, provider="profiling") as exp:
        exp.profiler.interval = 0.1
        time.sleep(1.5)
    assert len(exp.data(event=["start", "stop"])) >= 2
    profile = exp.data(event="profile")
    assert len(profile) >= 9 * 10
    steps = profile.drop_duplicates("step").step.tolist()
    assert steps == list(range(len(steps)))  # counted on, never restarting
    assert om.runtime.experiment(name).provider == "profiling"
    assert om.runtime.experiment(name, provider="simple").provider == "profiling"


def test_track_then_notracking(worker, om):
    exp = om.runtime.experiment(_name("then"))
    with exp:
        pass
    om.runtime.ping()
    assert len(exp.data(event="metric")) == 0 and len(exp.data()) == 2


def test_runs_filters_raw_batches(om):
    exp = om.runtime.experiment(_name("runs"))
    for i in range(10):
        with exp:
            exp.log_metric("acc", i)
            assert exp._latest_run == i + 1
    assert len(exp.data()) == 3
    everything = exp.data(run="*")
    assert len(everything) == 30 and sorted(set(everything.run)) == list(range(1, 11))
    assert set(exp.data(run=1).run) == {1}
    assert set(exp.data(run=-1).run) == {10} and set(exp.data(run=[-1, -2]).run) == {9, 10}
    assert len(exp.data(run=slice(1, 5))) == 15
    assert len(exp.data(run="*", slice=slice(0, 5))) == 5
    assert len(exp.data(run="*", slice=(3, 5))) == 2
    raw = exp.data(run="all", raw=True)
    assert isinstance(raw, list) and len(raw) == 30 and set(raw[0]) == set(COLUMNS)
    batches = list(exp.data(run="all", batchsize=5, raw=True))
    assert all(isinstance(b, list) for b in batches) and sum(map(len, batches)) == 30
    lazy = exp.data(run="all", lazy=True)
    assert not isinstance(lazy, (list, pd.DataFrame)) and len(list(lazy)) == 30
    frames = list(exp.data(run="all", batchsize=5))
    assert all(isinstance(b, pd.DataFrame) for b in frames) and sum(map(len, frames)) == 30
    with pytest.raises(ValueError, match="has runs 1..10"):
        exp.data(run=11)
    summary = exp.summary()
    assert {"acc", "latency"} == {k for _, k in summary.index}


def test_since_and_end(om):
    exp = om.runtime.experiment(_name("since"))
    start = pd.Timestamp("2026-01-01 00:00:00")
    with exp:
        for i in range(10):
            exp.log_metric("acc", i, dt=start + timedelta(hours=i))
    metric = dict(event="metric", run="all")
    assert len(exp.data(since=start, **metric)) == 10
    assert len(exp.data(since=start + timedelta(hours=5), **metric)) == 5
    assert len(exp.data(since=start + timedelta(hours=9), **metric)) == 1
    assert len(exp.data(since=start, end=start + timedelta(hours=3), **metric)) == 4
    exp._since_dtnow = start + timedelta(hours=9)
    assert len(exp.data(since="5h", **metric)) == 6  # 04:00 .. 09:00, both bounds inclusive
    assert len(exp.data(since="-11h", **metric)) == 10  # the sign is ignored: 'that long ago'
    assert len(exp.data(since="1h", **metric)) == 2
    assert len(exp.data(since="5h", end="0h", **metric)) == 6


def test_concurrent_runs_from_two_clients(om):
    name = _name("conc")
    code = ("import os, time, omegaml_otel as om\n"
            f"exp = om.runtime.experiment({name!r})\n"
            "with exp:\n"
            "    for i in range(5):\n"
            "        exp.log_metric('pid', os.getpid()); time.sleep(0.05)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    df = om.runtime.experiment(name).data(run="all", event="metric")
    assert sorted(set(df.run)) == [1, 2]
    per_run = df.groupby("run").value.agg(lambda v: set(v))
    assert all(len(pids) == 1 for pids in per_run) and per_run[1] != per_run[2]
    assert df.groupby("run").size().tolist() == [5, 5]


def test_unknown_provider(om):
    with pytest.raises(ValueError, match="unknown tracking provider"):
        om.runtime.experiment(_name("x"), provider="mlflow")


def test_plot(om, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    exp = om.runtime.experiment(_name("plot"), provider="profiling")
    for i in range(3):
        with exp:
            exp.log_metric("acc", i / 10)
    fig = exp.plot()
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["cpu %", "memory %"] + (["gpu %"] if _has_nvidia_gpu() else []) + ["acc"]
    assert len(fig.axes[0].lines) == 3  # one line per run (client samples)
    assert list(fig.axes[-1].lines[0].get_ydata()) == [0.0, 0.1, 0.2]
    fig.savefig(tmp_path / "exp.png")
    assert (tmp_path / "exp.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="nothing to plot"):
        om.runtime.experiment(_name("none")).plot()


def test_seed_profiling_with_a_notebook_job(worker, om):
    """The seed page's example as written: a notebook job doing a matmul, profiled, run twice."""
    from pathlib import Path

    notebook = Path(__file__).resolve().parent.parent / "examples" / "jobs" / "testcpu.ipynb"
    om.jobs.put(str(notebook), "testcpu")
    name = _name("perf")
    for _ in range(2):
        with om.runtime.experiment(name, provider="profiling") as exp:
            om.runtime.job("testcpu").run().get(timeout=120)
    df = exp.data()
    assert list(df.columns) == COLUMNS and set(df.run) == {2}
    events = set(df.event)
    assert {"start", "task_call", "task_success", "profile", "stop"} <= events
    call = df[df.event == "task_call"].iloc[0]
    assert call.key == "omegaml.notebook.tasks.run_omegaml_job"
    assert df[df.event == "task_success"].iloc[0].value["result"]["status"] == "OK"
    assert set(df[df.event == "profile"].key) >= set(PROFILE_KEYS)
    assert sorted(set(exp.data(run="all").run)) == [1, 2]


def test_legacy_experiment_kwarg(worker, om):
    """omega-ml clients send __experiment as a task kwarg: the task is tracked in a run of its own."""
    name = _name("legacy")
    result = om.runtime.task("omegaml.tasks.omega_ping").apply_async(kwargs={"__experiment": name, "fox": "bar"})
    assert result.get(timeout=30)["kwargs"] == {"fox": "bar"}
    df = om.runtime.experiment(name).data(run="all")
    assert list(df.event) == ["start", "task_call", "task_success", "stop"]
    assert df.value.iloc[1] == {"args": [], "kwargs": {"fox": "bar"}}


def test_events_readable_while_the_run_goes_on(worker, om):
    name = _name("live")
    with om.runtime.experiment(name) as exp:
        result = om.runtime.task("tests.log_burst").apply_async(args=(40, "live", 0.05))
        deadline = time.monotonic() + 20
        seen = set()
        while time.monotonic() < deadline and "task_call" not in seen:
            seen = set(exp.data().event)
            time.sleep(0.1)
        assert "task_call" in seen and not result.ready()  # the task is still running
        assert result.get(timeout=30) == 40
    assert "task_success" in set(exp.data().event)

"""omega-ml's experiment API where its own tests do not reach: behaviour taken from omega-ml's code
(``omegaml/backends/tracking/simple.py`` and ``statistics.py`` at 44e8553a, summarised in omegaml-behaviour §4)."""
from __future__ import annotations

import getpass
import uuid
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from omegaml_otel.settings import settings


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_tracker_classes_by_provider(om):
    simple = om.runtime.experiment(_name("simple"))
    profiling = om.runtime.experiment(_name("prof"), provider="profiling")
    notrack = om.runtime.experiment(_name("none"), provider="notrack")
    assert type(simple) is om.OmegaSimpleTracker and simple.experiment is simple
    assert isinstance(profiling, om.OmegaProfilingTracker) and isinstance(profiling, om.OmegaSimpleTracker)
    assert isinstance(notrack, om.NoTrackTracker) and not isinstance(notrack, om.OmegaSimpleTracker)
    assert repr(simple) == f"OmegaSimpleTracker({simple.name})" and simple._experiment == simple.name
    # the provider is fixed at the first use: a later provider= is ignored, the class follows the declaration
    again = om.runtime.experiment(profiling.name, provider="default")
    assert type(again) is om.OmegaProfilingTracker and again.provider == "profiling"
    assert notrack.data() is None and notrack.status() == "STOPPED"


def test_tracker_keywords(om):
    exp = om.runtime.experiment(_name("kw"), autotrack=True)
    assert exp.autotrack is True
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        om.runtime.experiment(_name("kw"), colour="red")


def test_restore_artifact_is_deprecated_and_returns_the_last(om):
    exp = om.runtime.experiment(_name("art"))
    with exp:
        exp.log_artifact({"v": 1}, "cfg")
        exp.log_artifact({"v": 2}, "cfg")
        exp.log_data("cfg", {"v": 3})  # event 'data': not an artifact
    with pytest.warns(DeprecationWarning, match="restore_artifacts"):
        assert exp.restore_artifact("cfg") == {"v": 2}
    assert exp.restore_artifacts("cfg") == [{"v": 1}, {"v": 2}]
    assert exp.restore_artifacts("cfg", event="data") == [{"v": 3}]
    assert exp.restore_artifacts(name="cfg", event=["artifact", "data"]) == [{"v": 1}, {"v": 2}, {"v": 3}]
    records = exp.data(key="cfg", raw=True)
    assert exp.restore_artifacts(value=records) == [{"v": 1}, {"v": 2}, {"v": 3}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert exp.restore_artifact("nothing") is None
    with pytest.raises(TypeError):
        exp.restore_data("cfg", colour="red")  # omega-ml passes these on to restore_artifacts(), which has none


def test_restore_data_concatenates_over_runs(om):
    exp = om.runtime.experiment(_name("xy"))
    frames = [pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [3]})]
    for i in range(2):
        with exp:
            exp.log_data("frame", frames[i])
            exp.log_data("array", np.arange(3) + 3 * i)
            exp.log_data("list", [i, i])
            exp.log_data("mixed", pd.Series([1, 2]) if i == 0 else np.array([3, 4]))
    pd.testing.assert_frame_equal(exp.restore_data("frame", run="*"), pd.concat(frames))
    np.testing.assert_array_equal(exp.restore_data("array", run="*"), np.arange(6))
    assert exp.restore_data("list", run="*") == [0, 0, 1, 1]
    assert exp.restore_data("mixed", run="*").tolist() == [1, 2, 3, 4]  # Series first: arrays join as Series
    assert exp.restore_data("list", run="*", concat=False) == [[0, 0], [1, 1]]
    assert exp.restore_data("array").tolist() == [3, 4, 5]  # the current run
    assert exp.restore_data("nothing", run="*") == []


def test_clear_numbers_runs_from_one_again(om):
    exp = om.runtime.experiment(_name("clear"))
    for _ in range(3):
        with exp:
            exp.log_metric("acc", 1, dt=pd.Timestamp.now("UTC").tz_localize(None) + timedelta(days=1))
    exp.clear(force=True)
    assert exp.data() is None and exp.data(run="all") is None
    assert exp.status() == "PENDING" and exp._latest_run is None
    with exp:
        exp.log_metric("acc", 2)
    df = exp.data(run="all")
    # the metric dated tomorrow was logged before the clear: gone, as in omega-ml's dropped dataset
    assert list(df.event) == ["start", "metric", "stop"] and set(df.run) == {1}
    assert exp.data(run="all", event="metric").value.tolist() == [2]


def test_data_filters_on_extra_fields(om):
    exp = om.runtime.experiment(_name("extra"))
    with exp:
        exp.log_extra(stage="train")
        exp.log_metric("acc", 0.5, fold=1)
        exp.log_metric("acc", 0.6, fold=2)
        exp.log_extra(remove=True)
        exp.log_metric("loss", 0.1)
    assert exp.data(stage="train").key.tolist() == ["acc", "acc"]
    assert exp.data(fold=2).value.tolist() == [0.6]
    assert exp.data(fold=[1, 2]).value.tolist() == [0.5, 0.6]
    assert exp.data(fold="all").event.tolist() == ["start", "metric", "metric", "metric", "stop"]
    assert len(exp.data(stage="test")) == 0
    assert len(exp.data(userid=getpass.getuser(), event="metric")) == 3
    assert len(exp.data(node=settings().hostname, event="metric")) == 3
    assert len(exp.data(node="elsewhere")) == 0
    with exp, pytest.raises(ValueError, match=r"\['userid'\] clash"):  # omega-ml's core fields cannot be extras
        exp.log_metric("acc", 1, userid="someone")


def test_data_filters_apply_to_profile_rows(om):
    exp = om.runtime.experiment(_name("profx"), provider="profiling")
    with exp:
        exp.log_metric("acc", 1, fold=1)
    assert "profile" in set(exp.data().event)
    assert set(exp.data(fold=1).event) == {"metric"}  # samples carry no such field
    assert "profile" in set(exp.data(node=settings().hostname).event)
    assert list(exp.data(node="elsewhere").columns) == list(exp.data().columns)


def test_end_offsets_and_timedeltas_lie_ahead(om):
    exp = om.runtime.experiment(_name("end"))
    now = pd.Timestamp("2026-06-15 12:00")
    with exp:
        for hours in (-2, 1, 3):
            exp.log_metric("acc", hours, dt=now + timedelta(hours=hours))
    exp._since_dtnow = now
    metric = dict(event="metric", run="all")
    assert exp.data(end=timedelta(hours=2), **metric).value.tolist() == [-2, 1]
    assert exp.data(end="-2h", **metric).value.tolist() == [-2, 1]  # the sign is dropped, as in omega-ml
    assert exp.data(since="+3h", **metric).value.tolist() == [-2, 1, 3]
    assert exp.data(since=timedelta(hours=1), **metric).value.tolist() == [1, 3]
    assert exp.data(since="0y", end="0y", **metric).value.tolist() == [-2, 1, 3]  # January 1 .. December 31


def test_stats(om):
    exp = om.runtime.experiment(_name("stats"))
    for i in range(3):
        with exp:
            exp.log_metric("acc", i / 10)
            exp.log_metric("loss", 1 - i / 10)
    df = exp.data(run="all", event=["start", "stop"])
    seconds = df.groupby("run").dt.agg(lambda dt: (dt.max() - dt.min()).total_seconds())
    latency = exp.stats.latency(run="all")
    assert latency.run.tolist() == [1, 2, 3] and latency.latency.tolist() == seconds.tolist()
    assert (latency.event == "start").all()  # each run's first event, as omega-ml merges them
    per_run = exp.stats.metrics(run="all")
    assert per_run.index.names == ["run", "event", "key"] and per_run["count"].tolist() == [1.0] * 6
    summary = exp.summary(perf_stats=True)
    assert list(summary.columns) == ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    assert list(summary.index) == [("metric", k) for k in ("acc", "loss", "latency", "group_latency",
                                                            "utilization")]
    assert summary.loc[("metric", "acc"), "mean"] == pytest.approx(0.1)
    assert summary.loc[("metric", "latency"), "max"] == pytest.approx(seconds.max())
    assert summary.loc[("metric", "group_latency"), "min"] == pytest.approx(60 / max(seconds.max(), 1))
    assert om.runtime.experiment(_name("empty")).summary().empty


def test_recreate_declares_anew_and_keeps_the_data(om):
    """omega-ml's ``recreate=True`` drops the tracker, not the events: the new provider holds from then on, what
    was logged stays, and runs are numbered on."""
    name = _name("recreate")
    with om.runtime.experiment(name, provider="profiling") as exp:
        exp.log_metric("acc", 1)
    again = om.runtime.experiment(name, recreate=True)  # no provider: omega-ml's default, 'simple'
    assert type(again) is om.OmegaSimpleTracker and again.provider == "simple"
    with again:
        again.log_metric("acc", 2)
    assert "system" not in set(again.data().event)  # a simple run now
    assert type(om.runtime.experiment(name, provider="profiling")) is om.OmegaSimpleTracker  # the newest holds
    metrics = again.data(run="all", event="metric")
    assert metrics.value.tolist() == [1, 2] and metrics.run.tolist() == [1, 2]
    assert type(om.runtime.experiment(name, provider="profiling", recreate=True)) is om.OmegaProfilingTracker
    assert type(om.runtime.experiment(name)) is om.OmegaProfilingTracker


def test_log_extra_taskid_and_userid_are_the_events_fields(om):
    """omega-ml's record has ``userid`` and ``taskid`` fields that ``log_extra()`` sets: ``data()`` filters on and
    shows what was set, and the process's user where nothing was."""
    exp = om.runtime.experiment(_name("ids"))
    with exp:
        exp.log_extra(taskid="task-1", userid="alice")
        exp.log_metric("acc", 1)
        exp.log_extra(userid="bob")
        exp.log_metric("acc", 2, taskid="task-2")  # taskid is no core field in omega-ml: allowed per call
        exp.log_extra(taskid=None, userid=None, remove=True)  # as omega-ml's worker does after a task
        exp.log_metric("acc", 3)
    assert exp.data(taskid="task-1").value.tolist() == [1]
    assert exp.data(taskid=["task-1", "task-2"]).value.tolist() == [1, 2]
    assert exp.data(userid="alice").value.tolist() == [1]
    assert exp.data(userid=["alice", "bob"], event="metric").value.tolist() == [1, 2]
    me = getpass.getuser()
    assert exp.data(userid=me, event="metric").value.tolist() == [3]
    df = exp.data(event="metric", extra=True)
    assert df.userid.tolist() == ["alice", "bob", me] and df.taskid.tolist() == ["task-1", "task-2", ""]
    assert len(exp.data(userid="carol")) == 0 and "taskid" not in exp.data(userid="bob").columns


def test_logging_after_the_run_stopped(om):
    """The part of omega-ml's ``test_drop_experiment`` that needs no model store, as upstream wrote it (``key=5``,
    ``value='accuracy'`` included): ``stop()`` keeps the run, so logging after the block still goes to it."""
    with om.runtime.experiment(_name("foo")) as exp:
        exp.log_metric(5, 'accuracy')
    assert len(exp.data()) == 3
    exp.log_metric(5, 'accuracy')
    exp.flush()
    assert len(exp.data()) == 4
    assert exp.data(event="metric").key.tolist() == ["5", "5"] and exp.status() == "STOPPED"


@pytest.mark.slow
def test_a_profiled_task_logs_the_workers_system(worker, om):
    """The client logs its ``system`` row after ``start``; each task run logs the worker's, tagged with its task."""
    with om.runtime.experiment(_name("wsys"), provider="profiling") as exp:
        om.runtime.ping()
    df = exp.data(extra=True)
    assert list(df.event[:2]) == ["start", "system"] and df.taskid.iloc[1] == ""  # the client's
    system = df[(df.event == "system") & (df.taskid != "")]
    call = df[df.event == "task_call"]
    assert len(system) == 1 and system.taskid.iloc[0] == call.taskid.iloc[0]
    assert system.index[0] < call.index[0] and system.value.iloc[0]["hardware"]["cpu_count"] >= 1
    # an omega-ml client's __experiment kwarg: the worker's own run shows the seed's sequence
    name = _name("legacysys")
    om.runtime.experiment(name, provider="profiling")
    om.runtime.task("omegaml.tasks.omega_ping").apply_async(kwargs={"__experiment": name}).get(timeout=30)
    events = om.runtime.experiment(name).data(run="all").event
    assert [e for e in events if e != "profile"] == ["start", "system", "task_call", "task_success", "stop"]

"""compat.expdata: profiling samples -> omega-ml's profile rows, value decoding, filters and batches."""
from __future__ import annotations

import base64
import pickle

import pandas as pd
import pytest

from omegaml_otel._internal.compat.expdata import (
    COLUMNS,
    EXTRA_COLUMNS,
    PROFILE_KEYS,
    batches,
    decode_values,
    filter_in,
    profile_rows,
    restore,
)
from omegaml_otel.conventions import EXPERIMENT, HOST_NAME, INSTANCE_ID, RUN, TASK_ID, USER
from omegaml_otel.errors import ArtifactError

T1 = pd.Timestamp("2024-03-05 10:00:00")
T2 = pd.Timestamp("2024-03-05 10:00:01.5")


def _sample(t, run="r1", node="n1", instance="i1", cpu=(0.1234, 0.5), task="task-1"):
    """The data points of one sample as store.metrics() returns them (CPUs deliberately out of order)."""
    attrs = {EXPERIMENT: "exp", RUN: run, TASK_ID: task}
    res = {HOST_NAME: node, INSTANCE_ID: instance, USER: "ann"}
    points = [
        ("system.cpu.utilization", cpu[1], {"cpu.logical_number": "1"}),
        ("system.cpu.utilization", cpu[0], {"cpu.logical_number": "0"}),
        ("system.cpu.logical.count", 2.0, {}),
        ("system.cpu.frequency", 3.1e9, {"cpu.logical_number": "1"}),
        ("system.cpu.frequency", 2.4e9, {"cpu.logical_number": "0"}),
        ("system.cpu.load_average.1m", 1.0, {}),
        ("system.cpu.load_average.5m", 0.5, {}),
        ("system.cpu.load_average.15m", 0.25, {}),
        ("system.memory.utilization", 0.45678, {}),
        ("system.memory.limit", 16e9, {}),
        ("system.filesystem.utilization", 0.25, {"system.filesystem.mountpoint": "/"}),
        ("system.filesystem.limit", 1e12, {"system.filesystem.mountpoint": "/"}),
    ]
    return [{"MetricName": n, "Value": v, "TimeUnix": t, "Attributes": {**attrs, **a}, "ResourceAttributes": res}
            for n, v, a in points]


def test_profile_rows_nine_keys_per_sample_in_seed_units():
    m = pd.DataFrame(_sample(T1) + _sample(T2, cpu=(0.0, 1.0)))
    df = profile_rows(m, "exp", {"r1": 3})
    assert list(df.columns) == COLUMNS
    assert len(df) == 2 * len(PROFILE_KEYS)
    assert list(df.key) == PROFILE_KEYS * 2
    assert set(df.experiment) == {"exp"} and set(df.event) == {"profile"} and set(df.node) == {"n1"}
    assert list(df.run) == [3] * 18 and str(df.run.dtype) == "Int64"
    assert list(df.step) == [0.0] * 9 + [1.0] * 9
    assert list(df.dt) == [T1] * 9 + [T2] * 9
    first = dict(zip(df.key[:9], df.value[:9]))
    assert first == {
        "profile_dt": "2024-03-05T10:00:00",
        "memory_load": 45.7,
        "memory_total": 16_000_000_000,
        "cpu_load": [12.3, 50.0],  # sorted by CPU number, percent rounded to 1 digit
        "cpu_count": 2,
        "cpu_freq": [2.4, 3.1],  # GHz
        "cpu_avg": [0.5, 0.25, 0.125],  # load per CPU
        "disk_use": 25.0,
        "disk_total": 1_000_000_000_000,
    }
    assert type(first["memory_total"]) is int and type(first["cpu_count"]) is int
    second = dict(zip(df.key[9:], df.value[9:]))
    assert second["cpu_load"] == [0.0, 100.0] and second["profile_dt"] == "2024-03-05T10:00:01.500000"


def test_profile_rows_steps_count_per_run_and_node_with_extras():
    m = pd.DataFrame(_sample(T1) + _sample(T1, node="n2", task="task-2") + _sample(T2)
                     + _sample(T2, run="r2", task="task-3"))
    df = profile_rows(m, "exp", {"r1": 1, "r2": 2}, extra=True)
    assert list(df.columns) == COLUMNS + EXTRA_COLUMNS
    per_sample = df.drop_duplicates(["run_id", "node", "dt"])
    got = list(per_sample[["run_id", "node", "step", "run", "taskid"]].itertuples(index=False, name=None))
    assert got == [("r1", "n1", 0.0, 1, "task-1"), ("r1", "n2", 0.0, 1, "task-2"), ("r1", "n1", 1.0, 1, "task-1"),
                   ("r2", "n1", 0.0, 2, "task-3")]
    assert set(df.userid) == {"ann"}


def test_profile_rows_empty_and_unknown_run():
    assert list(profile_rows(pd.DataFrame(), "exp", {}).columns) == COLUMNS
    assert list(profile_rows(pd.DataFrame(), "exp", {}, extra=True).columns) == COLUMNS + EXTRA_COLUMNS
    df = profile_rows(pd.DataFrame(_sample(T1, run="unknown")), "exp", {"r1": 1})
    assert df.run.isna().all() and len(df) == 9


def test_profile_rows_partial_sample_has_fewer_keys():
    m = pd.DataFrame([p for p in _sample(T1) if not p["MetricName"].startswith("system.cpu.load_average")])
    df = profile_rows(m, "exp", {"r1": 1})
    assert "cpu_avg" not in set(df.key) and len(df) == 8


def test_decode_values():
    assert decode_values(pd.Series(['1', '{"a": [2, "é"]}', None, '"s"', "null"])) == [1, {"a": [2, "é"]}, None,
                                                                                      "s", None]
    assert decode_values(pd.Series([], dtype=object)) == []


def test_filter_in():
    df = pd.DataFrame({"event": ["start", "metric", "stop", "metric"], "n": [1, 2, 3, 4]})
    assert filter_in(df, "event", None) is df
    assert filter_in(df, "event", "all") is df and filter_in(df, "event", "*") is df
    assert list(filter_in(df, "event", "metric").n) == [2, 4]
    assert list(filter_in(df, "event", ["start", "stop"]).n) == [1, 3]
    assert list(filter_in(df, "n", (4,)).event) == ["metric"]
    assert filter_in(df, "event", "nothing").empty


def test_batches():
    df = pd.DataFrame({"x": range(5)})
    parts = list(batches(df, 2, raw=False))
    assert [list(p.x) for p in parts] == [[0, 1], [2, 3], [4]]
    assert list(batches(df, 2, raw=True)) == [[{"x": 0}, {"x": 1}], [{"x": 2}, {"x": 3}], [{"x": 4}]]
    assert list(batches(df.iloc[:0], 2, raw=True)) == []


def test_restore():
    frame = restore({"format": "dataframe", "data": {"data": [[1, 2]], "columns": ["a", "b"]}})
    assert frame.to_dict("records") == [{"a": 1, "b": 2}]
    series = restore({"format": "series", "data": {"data": [1, 2], "index": ["x", "y"], "name": "s"}})
    assert series.to_dict() == {"x": 1, "y": 2} and series.name == "s"
    assert restore({"format": "json", "data": [1, 2]}) == [1, 2]


class _Planted:
    """Pickles to a call of ``open(path, 'w')``: unpickling it creates the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("fmt", ["pickle", "joblib", "dill", "cloudpickle"])
def test_restore_refuses_pickled_data_inside_a_record(tmp_path, fmt):
    """Pickled bytes in a record could have been written by anyone who can write a record: never unpickled."""
    marker = tmp_path / "planted"
    value = {"name": "model", "format": fmt, "data": base64.b64encode(pickle.dumps(_Planted(marker))).decode()}
    with pytest.raises(ArtifactError, match=r"artifact 'model' carries .* inside the telemetry record.*log_artifact"):
        restore(value)
    assert not marker.exists()

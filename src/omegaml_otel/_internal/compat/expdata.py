"""Experiment events read back: the reader's side of ``exp.data()``.

Turns store rows into omega-ml's layout: event values decoded from JSON (in one parse for a whole frame), profiling
samples (metric data points) into the seed's nine ``profile`` keys per sample, artifacts back into values, and the
frame filters and batching ``exp.data()`` offers.
"""
from __future__ import annotations

import json

import pandas as pd

from omegaml_otel._internal.compat.artifacts import PICKLED, load_pickled
from omegaml_otel.conventions import (
    CPU_LOGICAL_NUMBER,
    HOST_NAME,
    HW_ID,
    INSTANCE_ID,
    PROCESS_CPU_UTILIZATION,
    PROCESS_GPU_MEMORY_USAGE,
    PROCESS_MEMORY_USAGE,
    RUN,
    TASK_ID,
    USER,
    Event,
)

COLUMNS = ["experiment", "run", "event", "dt", "node", "step", "key", "value"]
EXTRA_COLUMNS = ["userid", "taskid", "run_id"]
PROFILE_KEYS = ["profile_dt", "memory_load", "memory_total", "cpu_load", "cpu_count", "cpu_freq", "cpu_avg",
                "disk_use", "disk_total"]
GPU_KEYS = ["gpu_load", "gpu_memory_load", "gpu_memory_used", "gpu_memory_total", "gpu_power", "gpu_temperature"]
#: the task's own process tree (a sample's first has no CPU share yet; GPU memory per device the task can see)
TASK_KEYS = ["task_cpu_load", "task_memory_used", "task_gpu_memory_used"]


def decode_values(values: pd.Series) -> list:
    """JSON values of many events in one parse (a json.loads per row is most of reading 100k events)."""
    texts = [v if isinstance(v, str) else "null" for v in values.tolist()]
    return json.loads("[" + ",".join(texts) + "]") if texts else []


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def filter_in(df: pd.DataFrame, column: str, value) -> pd.DataFrame:
    if value is None or (isinstance(value, str) and value in ("all", "*")):
        return df
    return df[df[column].isin(as_list(value))]


def batches(df: pd.DataFrame, size: int, raw: bool):
    for i in range(0, len(df), size):
        part = df.iloc[i:i + size]
        yield part.to_dict("records") if raw else part


def restore(value: dict):
    """An artifact record's value back as the object; pickled ones only from the signed artifact store (a record
    is no proof of where it came from, and unpickling runs code)."""
    fmt, data = value.get("format"), value.get("data")
    if fmt == "dataframe":
        return pd.DataFrame(**data)
    if fmt == "series":
        return pd.Series(data["data"], index=data["index"], name=data.get("name"))
    if fmt in PICKLED:
        return load_pickled(value)
    return data


def profile_rows(m: pd.DataFrame, experiment: str, number: dict, extra: bool = False) -> pd.DataFrame:
    """Metric data points of profiling samples -> omega-ml's ``profile`` rows (nine keys per sample, in the seed's
    units: percentages, bytes, GHz, load per CPU; GPU keys when a GPU was sampled), then the task's own keys:
    ``task_cpu_load`` in percent of one core, ``task_memory_used`` and ``task_gpu_memory_used`` in bytes."""
    columns = COLUMNS + (EXTRA_COLUMNS if extra else [])
    if not len(m):
        return pd.DataFrame(columns=columns)
    attrs = m.Attributes
    m = m.assign(run_id=[a.get(RUN, "") for a in attrs], node=[r.get(HOST_NAME, "") for r in
                                                                        m.ResourceAttributes],
                 cpu=[int(a.get(CPU_LOGICAL_NUMBER, -1)) for a in attrs], hw=[a.get(HW_ID, "") for a in attrs],
                 taskid=[a.get(TASK_ID, "") for a in attrs],
                 instance=[r.get(INSTANCE_ID, "") for r in m.ResourceAttributes])
    rows = []
    for (run_id, node, instance, t), s in m.groupby(["run_id", "node", "instance", "TimeUnix"], sort=False):
        v = {name: g for name, g in s.groupby("MetricName")}

        def one(name, scale=1.0, digits=None, cast=float):
            if name not in v:
                return None
            x = v[name].Value.iloc[0] * scale
            return cast(round(x, digits) if digits is not None else x)

        def per(name, key, scale=1.0, digits=None):
            if name not in v:
                return None
            g = v[name].sort_values(key)
            return [round(x * scale, digits) if digits is not None else x * scale for x in g.Value]

        count = one("system.cpu.logical.count", cast=int) or 1
        loads = [one(f"system.cpu.load_average.{w}") for w in ("1m", "5m", "15m")]
        sample = {
            "profile_dt": pd.Timestamp(t).isoformat(),
            "memory_load": one("system.memory.utilization", 100, 1),
            "memory_total": one("system.memory.limit", cast=int),
            "cpu_load": per("system.cpu.utilization", "cpu", 100, 1),
            "cpu_count": count,
            "cpu_freq": per("system.cpu.frequency", "cpu", 1e-9, 3),
            "cpu_avg": [round(x / count, 4) for x in loads] if None not in loads else None,
            "disk_use": one("system.filesystem.utilization", 100, 1),
            "disk_total": one("system.filesystem.limit", cast=int),
        }
        if "hw.gpu.memory.usage" in v:  # a MIG instance reports memory only
            sample.update({
                "gpu_load": per("hw.gpu.utilization", "hw", 100, 1),
                "gpu_memory_load": per("hw.gpu.memory.utilization", "hw", 100, 1),
                "gpu_memory_used": per("hw.gpu.memory.usage", "hw"),
                "gpu_memory_total": per("hw.gpu.memory.limit", "hw"),
                "gpu_power": per("hw.power", "hw", 1, 1),
                "gpu_temperature": per("hw.temperature", "hw", 1, 1),
            })
        if PROCESS_MEMORY_USAGE in v:
            sample["task_cpu_load"] = (round(float(v[PROCESS_CPU_UTILIZATION].Value.sum()) * count * 100, 1)
                                       if PROCESS_CPU_UTILIZATION in v else None)
            sample["task_memory_used"] = one(PROCESS_MEMORY_USAGE, cast=int)
            sample["task_gpu_memory_used"] = per(PROCESS_GPU_MEMORY_USAGE, "hw")
        base = {"experiment": experiment, "run": number.get(run_id), "event": Event.PROFILE, "dt": t, "node": node}
        ex = {"userid": s.ResourceAttributes.iloc[0].get(USER, ""), "taskid": s.taskid.iloc[0],
              "run_id": run_id} if extra else {}
        rows.extend({**base, "key": k, "value": val, "_sample": (run_id, node), **ex}
                    for k, val in sample.items() if val is not None)
    df = pd.DataFrame(rows)
    # step: sample number within run and node, counting on across flushes and tasks
    sample_index = df.groupby("_sample", sort=False).dt.rank(method="dense").astype("int64") - 1
    df["step"] = sample_index.astype(float)
    df["run"] = df["run"].astype("Int64")
    return df[columns]

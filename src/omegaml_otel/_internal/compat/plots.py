"""``exp.plot()``: profiling over time and metrics by run, drawn with matplotlib (optional extra ``plot``)."""
from __future__ import annotations

import pandas as pd


def plot_experiment(df: pd.DataFrame | None, title: str = ""):
    """One panel each for CPU, memory and (when sampled) GPU load over time, per node, plus one panel per metric key
    with its value by run. Returns the matplotlib Figure (a notebook shows it)."""
    try:  # the optional 'plot' extra, and slow to import: only when a plot is asked for
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("exp.plot() needs matplotlib: pip install 'omegaml-otel[plot]'") from None
    if df is None or not len(df):
        raise ValueError("nothing to plot: the selected runs have no events (check run=, since=)")
    profile = df[df.event == "profile"]
    metrics = df[df.event == "metric"]
    series = _profile_series(profile)
    panels = [name for name in ("cpu %", "memory %", "gpu %") if name in series] + sorted(set(metrics.key))
    if not panels:
        raise ValueError("nothing to plot: no profile samples and no metrics in the selected runs")
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels)), squeeze=False)
    for ax, name in zip(axes[:, 0], panels):
        if name in series:
            for label, s in series[name].items():
                ax.plot(s.index, s.values, marker=".", label=label)
            ax.set_ylabel(name)
            ax.set_ylim(0, 105)
        else:
            by_run = metrics[metrics.key == name].groupby("run").value.apply(lambda v: pd.to_numeric(v).mean())
            ax.plot(by_run.index.astype(int), by_run.values, marker="o")
            ax.set_xlabel("run")
            ax.set_ylabel(name)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _profile_series(profile: pd.DataFrame) -> dict[str, dict[str, pd.Series]]:
    out: dict[str, dict[str, pd.Series]] = {}
    for (run, node), g in profile.groupby(["run", "node"]):
        wide = g.pivot_table(index="dt", columns="key", values="value", aggfunc="first")
        label = f"run {run} {node}"
        if "cpu_load" in wide:
            out.setdefault("cpu %", {})[label] = wide["cpu_load"].map(lambda v: sum(v) / len(v) if v else 0.0)
        if "memory_load" in wide:
            out.setdefault("memory %", {})[label] = wide["memory_load"].astype(float)
        if "gpu_load" in wide:
            for i in range(max(len(v) for v in wide["gpu_load"].dropna())):
                out.setdefault("gpu %", {})[f"{label} gpu{i}"] = wide["gpu_load"].map(
                    lambda v, i=i: v[i] if v and len(v) > i else None)
    return out

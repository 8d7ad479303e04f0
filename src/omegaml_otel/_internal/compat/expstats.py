"""``exp.stats`` and ``exp.summary()``: omega-ml's ``ExperimentStatistics`` over ``exp.data()``.

The numbers are omega-ml's, computed from the events as omega-ml computes them, so a notebook that compares
runs by ``summary()`` gets the same table here: ``describe()`` of each metric, the latency of each run (first to
last of its ``start``/``stop`` events), and with ``perf_stats=True`` the throughput per run and the utilization
over time slots. Every result row is indexed by ``(event, key)``, with the statistics rows under event 'metric'.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from omegaml_otel.conventions import Event

if TYPE_CHECKING:  # only for the annotation: experiment.py imports this module
    from omegaml_otel._internal.compat.experiment import Experiment

#: omega-ml's defaults (``ExperimentStatistics.options``)
TIME_EVENTS = [Event.START, Event.STOP]
TIME_KEY = "latency"
GROUPBY = "run"
TP_UNIT = 60
PERCENTILES = [.25, .5, .75]


def _seconds(frame: pd.DataFrame) -> float:
    return (frame.dt.max() - frame.dt.min()).total_seconds()


def _as_stat_row(stats: pd.Series, key: str) -> pd.DataFrame:
    """One ``describe()`` as a row indexed ('metric', key), as omega-ml's ``align_index``."""
    row = stats.to_frame().T
    row.index = pd.MultiIndex.from_tuples([(Event.METRIC, key)], names=["event", "key"])
    return row


class ExperimentStatistics:
    """Statistics of one experiment's events; each method passes its other keywords to ``exp.data()``."""

    def __init__(self, tracker: Experiment):
        self.tracker = tracker

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tracker!r})"

    def data(self, **kwargs) -> pd.DataFrame:
        """``exp.data(**kwargs)``, an empty frame with the event columns where the experiment has no data."""
        df = self.tracker.data(**kwargs)
        return df if df is not None else pd.DataFrame(columns=["run", "event", "key", "value", "dt"])

    def summary(self, time_key: str | None = None, time_events: list[str] | None = None, percentiles=None,
                groupby: str | None = None, tp_unit: float | None = None, perf_stats: bool = False,
                **kwargs) -> pd.DataFrame:
        """``describe()`` of every metric across the runs, then the runs' latency (seconds); with ``perf_stats``
        also throughput (key ``group_latency``) and utilization. ``run`` defaults to 'all'."""
        percentiles = percentiles or PERCENTILES
        kwargs.setdefault("run", "all")
        parts = [self.metrics(percentiles=percentiles, groupby="", **kwargs),
                 self.latency(time_key=time_key, time_events=time_events, groupby=groupby, percentiles=percentiles,
                              **kwargs)]
        if perf_stats:
            parts += [self.throughput(tp_unit=tp_unit, time_events=time_events, **kwargs),
                      self.utilization(tp_unit=tp_unit, time_events=time_events, **kwargs)]
        return pd.concat([p for p in parts if len(p)]) if any(len(p) for p in parts) else pd.DataFrame()

    def metrics(self, event: str | None = None, percentiles=None, groupby: str | None = None,
                **kwargs) -> pd.DataFrame:
        """``describe()`` of each metric's values, per run (``groupby='run'``, the default) or across all runs
        (``groupby=''``). Values that are not numbers count as missing."""
        groups = ([groupby or GROUPBY] if groupby not in (0, "", -1) else []) + ["event", "key"]
        df = self.data(event=event or Event.METRIC, **kwargs)
        if not len(df):
            return pd.DataFrame()
        values = pd.to_numeric(df["value"], errors="coerce")
        return values.groupby([df[g] for g in groups]).describe(percentiles=percentiles)

    def latency(self, time_key: str | None = None, time_events: list[str] | None = None, percentiles=None,
                groupby: str | None = None, **kwargs) -> pd.DataFrame:
        """Seconds from the first to the last time event of each run. ``percentiles`` false: one row per run
        (its first event's columns and ``latency``); true or a list: one ``describe()`` row."""
        groupby, time_key = groupby or GROUPBY, time_key or TIME_KEY
        times = self.data(event=time_events or TIME_EVENTS, **kwargs)
        if not len(times):
            return pd.DataFrame()
        duration = times.groupby(groupby).apply(_seconds, include_groups=False)
        if percentiles:
            return _as_stat_row(duration.describe(percentiles=None if percentiles is True else percentiles), time_key)
        first = self.data(**kwargs).groupby(groupby).first().reset_index()
        return first.merge(duration.reset_index(name="latency"), on=groupby)

    def throughput(self, time_key: str | None = None, tp_unit: float | None = None, groupby: str | None = None,
                   time_events: list[str] | None = None, percentiles=None, **kwargs) -> pd.DataFrame:
        """Runs per ``tp_unit`` seconds (default 60), from each run's latency (at least 1 s), described."""
        tp_unit, groupby = tp_unit or TP_UNIT, groupby or GROUPBY
        times = self.data(event=time_events or TIME_EVENTS, **kwargs)
        if not len(times):
            return pd.DataFrame()
        rate = times.groupby(groupby).apply(lambda v: tp_unit / max(_seconds(v), 1), include_groups=False)
        return _as_stat_row(rate.describe(percentiles=percentiles), f"group_{time_key or TIME_KEY}")

    def group_latency(self, time_events: list[str] | None = None, percentiles=None, time_slots: int | None = None,
                      **kwargs) -> pd.DataFrame:
        """Wall-clock seconds spanned by the time events of each of ``time_slots`` equal time slots (default: a
        tenth of the events), at least 1 s each, described (key ``latency``, as omega-ml)."""
        times = self.data(event=time_events or TIME_EVENTS, **kwargs)
        if not len(times):
            return pd.DataFrame()
        bins = pd.cut(times.dt, bins=time_slots or math.ceil(len(times) * .1))
        spans = times.groupby(bins, observed=True).apply(lambda v: max(_seconds(v), 1), include_groups=False)
        return _as_stat_row(spans.describe(percentiles=percentiles), TIME_KEY)

    def utilization(self, tp_unit: float | None = None, time_events: list[str] | None = None, percentiles=None,
                    **kwargs) -> pd.DataFrame:
        """omega-ml's utilization: the effective throughput over time slots (a tenth of the events each, runs
        counted as start/stop pairs) divided, statistic by statistic, by the throughput of the runs."""
        tp_unit = tp_unit or TP_UNIT
        times = self.data(event=time_events or TIME_EVENTS, **kwargs)
        if not len(times):
            return pd.DataFrame()
        bins = pd.cut(times.dt, bins=math.ceil(len(times) * .1))
        effective = times.groupby(bins, observed=False).apply(
            lambda v: (len(v) // 2) / max(_seconds(v) * tp_unit, 1) if len(v) else float("nan"),
            include_groups=False).describe(percentiles=percentiles)
        throughput = self.throughput(tp_unit=tp_unit, time_events=time_events, percentiles=percentiles, **kwargs)
        ratio = effective.to_frame().T.reset_index(drop=True) / throughput.reset_index(drop=True)
        return _as_stat_row(ratio.iloc[0], "utilization")

"""Conformance: one scenario, captured once into SQLite and once into ClickHouse, read back alike.

The scenario (tests/support/scenarios/conformance.py: the seed's logging and profiling examples, an experiment with
metrics and a failing task) runs once, with every process exporting each signal to two destinations at the same time
(``OTEL_*_EXPORTER=omtel,otlp``): the embedded SQLite store, and OTLP/HTTP → rotel → ``tests/support/chsink.py``,
whose chdb holds the project's DDL. Both stores so get the very same records, and every compat DataFrame read from the
ClickHouse store (over HTTP, ``ClickHouseStore('clickhouse://…')``) must equal the one read from SQLite.

Engine differences the readers must absorb (docs/deployment.md): ClickHouse keeps attribute maps as strings and
has no stable order for equal timestamps; rotel writes neither ``TimestampTime`` nor ``EventName``.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from collector_path import collector_path, exporting_env
from omegaml_otel._internal.compat.experiment import Experiment
from omegaml_otel._internal.compat.logger import LogDataset
from omegaml_otel._internal.stores import open_store

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent / "support"
TABLES = ("otel_logs", "otel_traces", "otel_metrics_gauge", "otel_metrics_sum")


def _count(store, table: str) -> int:
    return len(store.query(table, columns=["Timestamp" if table in ("otel_logs", "otel_traces") else "TimeUnix"]))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(SQLite store, ClickHouse store) after the scenario, once every record reached both."""
    folder = tmp_path_factory.mktemp("conformance")
    with collector_path(folder) as path:
        env = exporting_env(folder / "home", path.otlp_http_port, exporters="omtel,otlp")
        run = subprocess.run([sys.executable, str(HERE / "scenarios" / "conformance.py"),
                              str(HERE.parents[1] / "examples" / "jobs" / "testcpu.ipynb")],
                             env=env, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr[-4000:]
        lite = open_store(f"sqlite:///{folder / 'home' / 'telemetry.sqlite'}", create=False)
        ch = open_store(path.store_url)
        expected = {t: _count(lite, t) for t in TABLES}
        deadline = time.monotonic() + 30
        while (got := {t: _count(ch, t) for t in TABLES}) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        assert got == expected, f"rows per table: SQLite {expected}, ClickHouse via rotel {got}"
        yield lite, ch


def test_every_table_holds_the_scenario(stores):
    lite, _ = stores
    assert all(_count(lite, t) for t in TABLES)


@pytest.mark.parametrize("kw", [{}, {"extra": True}, {"level": "ERROR"}, {"logger": "mylogger"}],
                         ids=["default", "extra", "level", "logger"])
def test_log_dataset(stores, kw):
    lite, ch = stores
    expected = LogDataset(store=lite).get(**kw)
    assert len(expected)
    pd.testing.assert_frame_equal(LogDataset(store=ch).get(**kw), expected)


@pytest.mark.parametrize("name, kw", [
    ("perf", {}), ("perf", {"event": "profile", "extra": True}), ("metrics", {"run": "all"}),
    ("metrics", {"event": "metric"}), ("fails", {"extra": True}),
], ids=["perf", "perf-profile", "metrics", "metrics-only", "fails"])
def test_experiment_data(stores, name, kw):
    lite, ch = stores
    expected = Experiment(name, store=lite).data(**kw)
    assert len(expected)
    pd.testing.assert_frame_equal(Experiment(name, store=ch).data(**kw), expected)


def test_runs_and_scenario_content(stores):
    lite, ch = stores
    for name in ("perf", "metrics", "fails"):
        pd.testing.assert_frame_equal(Experiment(name, store=ch).runs(), Experiment(name, store=lite).runs())
    perf = Experiment("perf", store=ch).data()
    assert {"start", "task_call", "task_success", "profile", "stop"} <= set(perf.event)
    fails = Experiment("fails", store=ch).data()
    assert "intentional exception" in fails[fails.event == "task_failure"].value.iloc[0]["exception"]
    metrics = Experiment("metrics", store=ch).data(event="metric")
    assert list(metrics.key) == ["accuracy"] * 3 + ["loss"]


def test_every_grafana_query_on_the_captured_data(stores):
    """The dashboards on real data, as the collector wrote it: every variable and panel query returns rows, except
    GPU panels on a machine without an NVIDIA GPU. (test_grafana covers them on synthetic data with GPUs.)"""
    import clickhouse_connect

    from grafana_panels import query_dashboards

    _, ch = stores
    host, port = ch.url.split("//", 1)[1].split("/", 1)[0].split(":")
    client = clickhouse_connect.get_client(host=host, port=int(port), database="otel")  # Grafana's default db
    now = int(time.time())
    results = query_dashboards(lambda sql: client.query(sql).result_rows, from_s=now - 3600, to_s=now + 60,
                               one=None)
    assert len(results) > 20
    errors = {k: v for k, v in results.items() if not isinstance(v, int)}
    assert not errors, errors
    empty = {k for k, v in results.items() if v == 0}
    assert all("GPU" in k for k in empty), sorted(empty)

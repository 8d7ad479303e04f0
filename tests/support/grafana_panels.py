"""Runs every Grafana panel's SQL (and every template variable's query) against chdb holding a scenario's data.

Used by tests/test_grafana.py in a subprocess, because chdb opens one data folder per process:

    python tests/support/grafana_panels.py /abs/chdb/dir
    # prints {"<uid>/<panel> <title> [mode]": rows or "error: ..."}

Each query is expanded twice, with one value per template variable ("one") and with every value the variable's own
query returns, as Grafana's "All" does ("all"). The macro expander mirrors grafana-clickhouse-datasource v4 closely
enough for ClickHouse to run the result; anything left with a ``$`` is an error.
"""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from schema_rows import row

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "collector-config" / "grafana" / "dashboards"

T0_S = 1_767_323_045  # 2026-01-02 03:04:05 UTC
T0_NS = T0_S * 1_000_000_000
FROM_S, TO_S = T0_S - 3600, T0_S + 3600  # the dashboard time range
INTERVAL_S = 60

SERVICE, APP = "omegaml-worker", "omegaml-app"
HOST = "worker-1"
EXPERIMENT = "exp1"
RUN1, RUN2 = "a1" * 16, "b2" * 16
#: the value each template variable takes in the "one" mode
ONE = {"service": SERVICE, "task": "tasks.ping", "host": HOST, "experiment": EXPERIMENT, "run": RUN1}

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def expand(sql: str, variables: dict[str, list[str]], *, from_s: int = FROM_S, to_s: int = TO_S,
           interval_s: int = INTERVAL_S) -> str:
    """``sql`` with the datasource macros and template variables replaced; ValueError if a ``$`` is left."""
    sql = re.sub(r"\$__timeFilter\(\s*([^)]+?)\s*\)",
                 lambda m: f"{m[1]} >= toDateTime64({from_s}, 9) AND {m[1]} <= toDateTime64({to_s}, 9)", sql)
    sql = re.sub(r"\$__timeInterval\(\s*([^)]+?)\s*\)",
                 lambda m: f"toStartOfInterval({m[1]}, INTERVAL {interval_s} second)", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({from_s})").replace("$__toTime", f"toDateTime({to_s})")
    sql = sql.replace("$__interval_s", str(interval_s))

    def var(m: re.Match) -> str:
        name, fmt = (m[1], m[2]) if m[1] else (m[3], None)
        if name not in variables:
            return m[0]
        values = variables[name]
        if fmt == "singlequote":
            return ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
        if fmt in (None, "raw", "csv"):
            return ",".join(values)
        raise ValueError(f"variable format {fmt!r} of ${name} is not supported by the test expander")

    sql = _VAR.sub(var, sql)
    if "$" in sql:
        raise ValueError(f"unexpanded '$' in: {sql}")
    return sql


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


# -- scenario -----------------------------------------------------------------------------------------------------
def scenario() -> dict[str, list[tuple]]:
    """Ping tasks (producer + consumer spans) on two workers with one failing task, their task logs, host/GPU
    gauges, and an experiment with two runs (events and profile metrics tagged with experiment and run)."""
    from omegaml_otel._internal.stores import schema

    ms = 1_000_000
    res_worker = {"service.name": SERVICE, "host.name": HOST}
    traces, logs, gauges = [], [], []
    tasks = [("tasks.ping", "celery@worker-1", True)] * 4 + [("tasks.add", "celery@worker-2", True)] * 2 \
        + [("tasks.ping", "celery@worker-2", False)]
    for i, (task, worker, ok) in enumerate(tasks):
        trace, producer, consumer, task_id = f"{i + 1:032x}", f"{2 * i + 1:016x}", f"{2 * i + 2:016x}", f"task-{i}"
        start = T0_NS + i * 20_000 * ms
        attrs = {"celery.task_name": task, "messaging.message.id": task_id}
        traces.append(row(schema.TRACES, Timestamp=start, TraceId=trace, SpanId=producer,
                           SpanName=f"apply_async/{task}", SpanKind="Producer", ServiceName=APP,
                           ResourceAttributes={"service.name": APP, "host.name": "notebook"},
                           ScopeName="opentelemetry.instrumentation.celery", Duration=3 * ms, StatusCode="Unset",
                           SpanAttributes={**attrs, "celery.action": "apply_async",
                                           "messaging.destination": "celery"}))
        traces.append(row(schema.TRACES, Timestamp=start + 40 * ms + i * ms, TraceId=trace, SpanId=consumer,
                           ParentSpanId=producer, SpanName=f"run/{task}", SpanKind="Consumer", ServiceName=SERVICE,
                           ResourceAttributes=res_worker, ScopeName="opentelemetry.instrumentation.celery",
                           Duration=(20 + 15 * i) * ms, StatusCode="Ok" if ok else "Error",
                           StatusMessage="" if ok else "ValueError: boom",
                           SpanAttributes={**attrs, "celery.action": "run", "celery.hostname": worker,
                                           "celery.state": "SUCCESS" if ok else "FAILURE"}))
        lines = [("INFO", 9, f"{task} started")] + ([("INFO", 9, "done")] if ok else
                                                   [("WARN", 13, "about to fail"), ("ERROR", 17, "boom")])
        for j, (level, number, body) in enumerate(lines):
            logs.append(row(schema.LOGS, Timestamp=start + (41 + j) * ms + i * ms, TraceId=trace, SpanId=consumer,
                             TraceFlags=1, SeverityText=level, SeverityNumber=number, ServiceName=SERVICE,
                             Body=body, ResourceAttributes=res_worker, ScopeName="worker_tasks",
                             LogAttributes={"celery.task_id": task_id, "celery.task_name": task}))

    def gauge(t, name, value, **attrs):
        gauges.append(row(schema.GAUGE, ResourceAttributes=res_worker, ScopeName="omegaml_otel.profiling",
                           ServiceName=SERVICE, MetricName=name, MetricUnit="1", Attributes=attrs,
                           StartTimeUnix=t, TimeUnix=t, Value=value))

    for k in range(10):  # host profiling, one sample a minute
        t = T0_NS + k * 60_000 * ms
        run = {"omegaml.experiment": EXPERIMENT, "omegaml.run.id": RUN1 if k < 5 else RUN2}
        for cpu in range(4):
            gauge(t, "system.cpu.utilization", 0.1 * cpu + 0.01 * k, **{"cpu.logical_number": str(cpu)}, **run)
        gauge(t, "system.memory.utilization", 0.4 + 0.01 * k, **run)
        gauge(t, "system.filesystem.utilization", 0.55, **{"system.filesystem.mountpoint": "/"}, **run)
        for gpu in range(2):
            hw = {"hw.id": f"gpu{gpu}", "hw.type": "gpu", "hw.name": "NVIDIA H100"}
            gauge(t, "hw.gpu.utilization", 0.5 + 0.2 * gpu, **hw, **{"hw.gpu.task": "general"}, **run)
            gauge(t, "hw.gpu.memory.utilization", 0.3 + 0.1 * gpu, **hw, **run)

    def event(t, run, name, key=None, value=None):
        attrs = {"omegaml.experiment": EXPERIMENT, "omegaml.run.id": run, "omegaml.event": name}
        if key is not None:
            attrs["omegaml.key"] = key
        if value is not None:
            attrs["omegaml.value"] = json.dumps(value)
        logs.append(row(schema.LOGS, Timestamp=t, TraceId=run, SeverityText="INFO", SeverityNumber=9,
                         ServiceName=SERVICE, Body=f"{name} {key}" if key else name, ResourceAttributes=res_worker,
                         ScopeName="omegaml.experiment", LogAttributes=attrs))  # no EventName, as rotel writes

    for r, run in enumerate((RUN1, RUN2)):
        t = T0_NS + r * 300_000 * ms
        event(t, run, "start")
        event(t + 1_000 * ms, run, "task_call", "tasks.ping")
        event(t + 2_000 * ms, run, "task_success" if r == 0 else "task_failure", "tasks.ping")
        for step in range(5):
            event(t + (10 + step) * 1_000 * ms, run, "metric", "acc", 0.5 + 0.1 * step)
            event(t + (10 + step) * 1_000 * ms, run, "metric", "loss", 1.0 / (step + 1))
        event(t + 20_000 * ms, run, "profile", "cpu", {"cpu_percent": 12.5})
        if r == 0:  # the second run is still running
            event(t + 30_000 * ms, run, "stop")
    return {schema.TRACES: traces, schema.LOGS: logs, schema.GAUGE: gauges}


# -- running ------------------------------------------------------------------------------------------------------
def run_all(path: str) -> dict[str, int | str]:
    """The synthetic scenario in a fresh chdb folder, then every query of every dashboard against it."""
    from omegaml_otel._internal.stores.clickhouse import ClickHouseStore

    store = ClickHouseStore(f"chdb://{path}")
    store.apply_schema()
    for table, rows in scenario().items():
        store.write(table, rows)
    client = store._conn()
    client.command(f"USE {store.database}")  # Grafana's datasource has defaultDatabase otel: bare table names
    try:
        return query_dashboards(lambda sql: client.query(sql).result_rows)
    finally:
        store.close()


def query_dashboards(rows: Callable[[str], list], *, from_s: int = FROM_S, to_s: int = TO_S,
                     one: dict[str, str] | None = ONE) -> dict[str, int | str]:
    """Row counts (or "error: ...") of every variable's and panel's query, through ``rows(sql)``. Modes: "one"
    (each variable set to its value in ``one``; skipped when ``one`` is None) and "all" (every option)."""
    results: dict[str, int | str] = {}
    for name, dash in dashboards().items():
        for mode in ("one", "all") if one is not None else ("all",):
            values: dict[str, list[str]] = {}
            for v in dash.get("templating", {}).get("list", []):
                label = f"{dash['uid']}/${v['name']} [{mode}]"
                try:
                    options = [str(r[0]) for r in rows(expand(v["query"], values, from_s=from_s, to_s=to_s))]
                    results[label] = len(options)
                except Exception as exc:
                    results[label] = f"error: {str(exc)[:500]}"
                    options = []
                if mode == "one" and v.get("hide") != 2:  # a hidden variable takes what its query returns
                    if one.get(v["name"]) not in options:
                        results[label] = f"error: {one.get(v['name'])!r} is not among the options {options}"
                    values[v["name"]] = [one.get(v["name"], "")]
                else:
                    values[v["name"]] = options
            for panel in dash["panels"]:
                for target in panel.get("targets", []):
                    label = f"{dash['uid']}/{panel['id']}{target['refId']} {panel['title']} [{mode}]"
                    try:
                        results[label] = len(rows(expand(target["rawSql"], values, from_s=from_s, to_s=to_s)))
                    except Exception as exc:
                        results[label] = f"error: {str(exc)[:500]}"
    return results


if __name__ == "__main__":
    print(json.dumps(run_all(sys.argv[1]), indent=1))

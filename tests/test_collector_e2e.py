"""End to end through a real collector: worker → OTLP/HTTP → rotel → chdb sink → ClickHouse store over HTTP.

Every component is real: an ``omtel worker`` exporting OTLP/HTTP, rotel (from PyPI) with its ClickHouse exporter,
``tests/support/chsink.py`` (a process that owns a chdb folder and speaks the ClickHouse HTTP protocol) and a client
process whose reader is ``ClickHouseStore('clickhouse://…')`` pointed at the sink while everything keeps running.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from collector_path import collector_path, exporting_env, stop

pytestmark = pytest.mark.slow

CLIENT = r"""
import json, sys, time
import omegaml_otel as om
from omegaml_otel._internal.runtimes.client import wait_for

deadline = time.monotonic() + 30
while True:  # the worker is ready when it answers a ping on its own broker
    try:
        wait_for(om.runtime.task("omegaml.tasks.omega_ping").apply_async(), timeout=2)
        break
    except TimeoutError:
        if time.monotonic() > deadline:
            raise
om.logger.reset()  # 'log init' goes over OTLP too: the embedded-store shortcut in dataset.ensure() is off
om.runtime.mode(logging=True)
result = om.runtime.ping(fox="bar")
# the collector path delivers with a delay: wait for the ping's records (and this process's reset) to arrive
df = om.logger.dataset.get(wait=True, timeout=20)
deadline = time.monotonic() + 20
while True:  # spans end after the result is published, so they come a little later still
    names = set(om.telemetry.spans().SpanName)
    if "run/omegaml.tasks.omega_ping" in names or time.monotonic() > deadline:
        break
    time.sleep(0.2)
try:  # a task whose records never come: a clear error naming the delay settings, not a hang
    om.logger.dataset.get(wait="no-such-task", timeout=1)
    missing = "no error"
except TimeoutError as exc:
    missing = str(exc)
print(json.dumps({
    "missing": missing,
    "rows": [[r.level, int(r.levelno), r.logger, r.msg, r.hostname] for r in df.itertuples()],
    "spans": sorted(names),
    "result": {"kwargs": result["kwargs"], "message": result["message"], "worker": result["worker"]},
    "store": om.logger.dataset.store.url,
}))
"""


def test_worker_through_rotel_into_clickhouse_read_over_http(tmp_path):
    with collector_path(tmp_path) as path:
        env = exporting_env(tmp_path / "home", path.otlp_http_port)
        with open(tmp_path / "worker.log", "w") as log:
            worker = subprocess.Popen([sys.executable, "-m", "omegaml_otel.cli", "worker", "--concurrency=2"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                client = subprocess.run([sys.executable, "-c", CLIENT], env=dict(env, OMTEL_STORE=path.store_url),
                                        capture_output=True, text=True, timeout=90)
            finally:
                stop(worker, 30)
        assert client.returncode == 0, client.stderr[-4000:]
        out = json.loads(client.stdout.strip().splitlines()[-1])
        sink_port = path.sink_port
    sink = path.sink

    assert out["store"] == f"clickhouse://127.0.0.1:{sink_port}/otel"
    rows = out["rows"]
    assert [tuple(r[:3]) for r in rows] == [("SYSTEM", 999, "system"), ("INFO", 4, "simple"),
                                            ("INFO", 20, "celery"), ("INFO", 20, "omegaml"), ("INFO", 20, "root")]
    assert rows[0][3] == "log init"
    assert rows[1][3].startswith("omega log: running ping task {'message': 'ping return message'")
    assert rows[2][3].startswith("python log: running ping task")
    assert rows[3][3].startswith("package log: running ping task")
    assert rows[4][3].startswith("print log: running ping task")
    assert all(r[4] for r in rows)
    assert "run/omegaml.tasks.omega_ping" in out["spans"]
    assert "no-such-task" in out["missing"] and "OTEL_BLRP_SCHEDULE_DELAY" in out["missing"]
    assert "apply_async/omegaml.tasks.omega_ping" in out["spans"]
    assert out["result"]["kwargs"] == {"fox": "bar"} and out["result"]["message"] == "ping return message"
    assert out["result"]["worker"].startswith("omtel")
    assert sink.returncode == 0, (tmp_path / "run" / "sink.log").read_text()[-2000:]

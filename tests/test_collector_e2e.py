"""End to end through a real collector: worker → OTLP/HTTP → rotel → chdb sink → ClickHouse store over HTTP.

Every component is real: an ``omtel worker`` exporting OTLP/HTTP, rotel (from PyPI) with its ClickHouse exporter,
``tests/chsink.py`` (a process that owns a chdb folder and speaks the ClickHouse HTTP protocol) and a client
process whose reader is ``ClickHouseStore('clickhouse://…')`` pointed at the sink while everything keeps running.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent

CLIENT = r"""
import json, sys, time
import omegaml_otel as om
from omegaml_otel.runtimes.client import wait_for

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} is not listening on {port} after {timeout}s")
            time.sleep(0.05)


def _stop(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _env(tmp_path: Path, otlp_port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_", "ROTEL_"))}
    env.update(OMTEL_HOME=str(tmp_path / "home"), OMTEL_IMPORTS="worker_tasks",
               OTEL_TRACES_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp",
               OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}",
               OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
               OTEL_BLRP_SCHEDULE_DELAY="100", OTEL_BSP_SCHEDULE_DELAY="100")
    return env


def test_worker_through_rotel_into_clickhouse_read_over_http(tmp_path):
    from rotel import Config, Rotel

    sink_port, http_port, grpc_port = _free_port(), _free_port(), _free_port()
    run = tmp_path / "run"
    run.mkdir()
    env = _env(tmp_path, http_port)
    sink = worker = rotel = None
    logs = {name: open(run / f"{name}.log", "w") for name in ("sink", "worker")}
    try:
        sink = subprocess.Popen([sys.executable, str(HERE / "chsink.py"), str(sink_port), str(tmp_path / "chdb")],
                                env=env, stdout=logs["sink"], stderr=subprocess.STDOUT)
        # the worker starts meanwhile: it only needs rotel once it exports
        worker = subprocess.Popen([sys.executable, "-m", "omegaml_otel.cli", "worker", "--concurrency=2"],
                                  env=env, stdout=logs["worker"], stderr=subprocess.STDOUT)
        _wait_listening(sink_port, 30, sink, "chsink")
        with urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/ping", timeout=5) as resp:
            assert resp.read() == b"Ok.\n"
        rotel = Rotel(enabled=True, otlp_http_endpoint=f"127.0.0.1:{http_port}",
                      otlp_grpc_endpoint=f"127.0.0.1:{grpc_port}", pid_file=str(run / "rotel.pid"),
                      log_file=str(run / "rotel.log"), batch_timeout="100ms",
                      exporter=Config.clickhouse_exporter(endpoint=f"http://127.0.0.1:{sink_port}",
                                                          compression="lz4", async_insert=False))
        rotel.start()
        _wait_listening(http_port, 20, what="rotel")

        client_env = dict(env, OMTEL_STORE=f"clickhouse://127.0.0.1:{sink_port}/otel")
        client = subprocess.run([sys.executable, "-c", CLIENT], env=client_env, capture_output=True, text=True,
                                timeout=90)
        assert client.returncode == 0, client.stderr[-4000:]
        out = json.loads(client.stdout.strip().splitlines()[-1])
    finally:
        _stop(worker, 30)
        if rotel is not None:
            rotel.stop()
        _stop(sink, 20)
        for f in logs.values():
            f.close()

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
    assert sink.returncode == 0, (run / "sink.log").read_text()[-2000:]

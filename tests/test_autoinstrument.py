"""``opentelemetry-instrument celery -A <their app> worker`` with only omegaml-otel installed."""
from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from omegaml_otel._internal.stores import Cond
from omegaml_otel._internal.stores.sqlite import SqliteStore

pytestmark = pytest.mark.slow
APP = Path(__file__).parent / "support" / "autoapp"
BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(PYTHONPATH=str(APP), USERAPP_FOLDER=str(tmp_path / "broker"), OMTEL_HOME=str(tmp_path / "home"),
               OTEL_SERVICE_NAME="userapp", **extra)
    return env


def _run_app(tmp_path: Path, env: dict) -> list[str]:
    instrument = str(BIN / "opentelemetry-instrument")
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([instrument, str(BIN / "celery"), "-A", "userapp", "worker", "--pool=prefork",
                               "--concurrency=2", "--loglevel=INFO"], env=env, stdout=log, stderr=log)
    try:
        client = subprocess.run([instrument, sys.executable, str(APP / "client.py")], env=env, capture_output=True,
                                text=True, timeout=120)
        assert client.returncode == 0, client.stderr
        return client.stdout.split()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        log.close()


def test_entry_points_are_registered():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")}
    assert {"omegaml_otel_celery", "omegaml_otel_logging", "omegaml_otel_stdout"} <= names
    assert shutil.which("opentelemetry-instrument", path=str(BIN))


def test_their_app_into_the_embedded_store(tmp_path):
    env = _env(tmp_path)
    ids = _run_app(tmp_path, env)
    assert len(ids) == 3
    store = SqliteStore(tmp_path / "home" / "telemetry.sqlite", create=False)
    for i, task_id in enumerate(ids):
        logs = store.logs(conds=[Cond("LogAttributes", "eq", task_id, key="celery.task_id")])
        by_scope = {scope: body for scope, body in zip(logs.ScopeName, logs.Body)}
        assert by_scope["userapp.tasks"] == f"adding {i} and 10"
        assert by_scope["stdout"] == f"sum is {i + 10}"
        # stored once: Celery's own redirect of print must not produce a second record
        assert "celery.redirected" not in by_scope
        spans = store.spans(conds=[Cond("SpanAttributes", "eq", task_id, key="messaging.message.id")])
        assert sorted(spans.SpanKind) == ["Consumer", "Producer"]
        assert spans.TraceId.nunique() == 1
        assert set(logs.TraceId) == set(spans.TraceId)
        assert set(spans.ServiceName) == {"userapp"}


class _Collector(BaseHTTPRequestHandler):
    received: dict[str, list[bytes]] = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_their_app_to_an_otlp_endpoint(tmp_path):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = _env(tmp_path, OTEL_TRACES_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp", OTEL_METRICS_EXPORTER="none",
                   OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                   OTEL_BLRP_SCHEDULE_DELAY="100", OTEL_BSP_SCHEDULE_DELAY="100")
        ids = _run_app(tmp_path, env)
        time.sleep(0.5)
    finally:
        server.shutdown()
    bodies, task_ids = [], set()
    for raw in _Collector.received.get("/v1/logs", []):
        req = ExportLogsServiceRequest.FromString(raw)
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    bodies.append(rec.body.string_value)
                    task_ids |= {a.value.string_value for a in rec.attributes if a.key == "celery.task_id"}
    assert {f"sum is {i + 10}" for i in range(3)} <= set(bodies)
    assert set(ids) <= task_ids
    span_names = set()
    for raw in _Collector.received.get("/v1/traces", []):
        for rs in ExportTraceServiceRequest.FromString(raw).resource_spans:
            for ss in rs.scope_spans:
                span_names |= {s.name for s in ss.spans}
    assert {"run/userapp.add", "apply_async/userapp.add"} <= span_names
    # nothing went to the embedded store
    assert not (tmp_path / "home" / "telemetry.sqlite").exists()


def test_collector_down_does_not_break_tasks(tmp_path):
    """OTLP endpoint that refuses connections: tasks still run, and the exporter's own complaints are not fed
    back into the log pipeline (no recursion, no endless export loop)."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(tmp_path, OTEL_TRACES_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp", OTEL_METRICS_EXPORTER="none",
               OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_TIMEOUT="1",
               OTEL_BLRP_SCHEDULE_DELAY="100", OTEL_BSP_SCHEDULE_DELAY="100")
    started = time.monotonic()
    ids = _run_app(tmp_path, env)
    assert len(ids) == 3
    assert time.monotonic() - started < 60
    log = (tmp_path / "worker.log").read_text()
    assert "RecursionError" not in log
    assert "sum is 10" in log  # print output still reaches the console
    # what could not reach the collector is counted and reported when the pool children end
    assert "logs to otlp records could not be exported" in log
    import re
    runtimes = [float(t) for t in re.findall(r"succeeded in ([0-9.e-]+)s", log)]
    assert len(runtimes) == 3 and max(runtimes) < 0.5, runtimes  # no task waits for the absent collector


def test_their_tasks_are_tracked_in_an_experiment(tmp_path):
    """A task of someone else's app sent inside an experiment block is tracked by their (instrumented) worker."""
    env = _env(tmp_path)
    instrument = str(BIN / "opentelemetry-instrument")
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([instrument, str(BIN / "celery"), "-A", "userapp", "worker", "--pool=prefork",
                               "--concurrency=1", "--loglevel=INFO"], env=env, stdout=log, stderr=log)
    try:
        client = subprocess.run([instrument, sys.executable, str(APP / "exp_client.py")], env=env,
                                capture_output=True, text=True, timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        log.close()
    assert client.returncode == 0, client.stderr
    rows = client.stdout.strip().splitlines()[-1].split(",")
    assert rows[0] == "start:" and rows[-1] == "stop:"
    assert "task_call:userapp.add" in rows and "task_success:userapp.add" in rows


PROFILED_CLIENT = r"""
import json, time
import omegaml_otel as om

started = time.monotonic()
with om.runtime.experiment("down", provider="profiling") as exp:
    exp.log_metric("accuracy", 0.9)
block = time.monotonic() - started
started = time.monotonic()
df = exp.data()
print(json.dumps({"block": block, "read": time.monotonic() - started, "events": sorted(set(df.event))}))
"""


def test_collector_down_does_not_hold_up_a_profiled_block_or_reads(tmp_path):
    """Every signal to the embedded store and to an OTLP endpoint that refuses connections: the profiled block
    (samples at start and stop) and exp.data() (which flushes first) do not wait for the exporter's retries;
    the embedded store has the data; what the collector missed is reported at exit, metrics included."""
    import json
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(tmp_path, OTEL_TRACES_EXPORTER="omtel,otlp", OTEL_LOGS_EXPORTER="omtel,otlp",
               OTEL_METRICS_EXPORTER="omtel,otlp", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
               OTEL_EXPORTER_OTLP_TIMEOUT="3")
    client = subprocess.run([sys.executable, "-c", PROFILED_CLIENT], env=env, capture_output=True, text=True,
                            timeout=120)
    assert client.returncode == 0, client.stderr[-3000:]
    out = json.loads(client.stdout.strip().splitlines()[-1])
    # one export attempt with its retries takes the 3 s timeout; the block and the read must not wait for one
    assert out["block"] < 2.5 and out["read"] < 1, out
    assert {"start", "metric", "profile", "stop"} <= set(out["events"])
    assert "metrics to otlp records could not be exported" in client.stderr

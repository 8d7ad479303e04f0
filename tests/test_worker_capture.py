"""Capture on real worker processes: spans and trace correlation, concurrency, bursts, recycling, shutdown."""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omegaml_otel._internal.runtimes.client import wait_for
from omegaml_otel.worker import worker_process

pytestmark = pytest.mark.slow


def _send(om, name, *args, queue="omegaml", **kwargs):
    return om.runtime.task(name).apply_async(args=args, kwargs=kwargs, queue=queue)


def _count(om, task_id: str, scope: str) -> int:
    return len(om.telemetry.logs(ScopeName=scope, attributes={"celery.task_id": task_id}))


def _wait_spans(om, task_id: str, n: int, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        spans = om.telemetry.spans(attributes={"messaging.message.id": task_id})
        if len(spans) >= n or time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def test_spans_share_trace_with_logs(worker, om):
    om.logger.reset()
    om.runtime.mode(logging=True)
    result = om.runtime.ping(wait=False)
    wait_for(result, 10)
    spans = _wait_spans(om, result.id, 2)
    kinds = dict(zip(spans.SpanKind, spans.index))
    assert set(kinds) == {"Producer", "Consumer"}
    producer, consumer = spans.loc[kinds["Producer"]], spans.loc[kinds["Consumer"]]
    assert producer.SpanName == "apply_async/omegaml.tasks.omega_ping"
    assert consumer.SpanName == "run/omegaml.tasks.omega_ping"
    assert producer.TraceId == consumer.TraceId and len(consumer.TraceId) == 32
    assert consumer.ParentSpanId == producer.SpanId
    assert consumer.ServiceName == "omegaml-worker" and producer.ServiceName == "omegaml-client"
    logs = om.telemetry.logs(attributes={"celery.task_id": result.id})
    task_logs = logs[logs.ScopeName.isin(["simple", "celery", "omegaml", "root"])]
    assert len(task_logs) == 4
    assert set(task_logs.TraceId) == {consumer.TraceId}
    assert set(task_logs.SpanId) == {consumer.SpanId}
    extra = om.logger.dataset.get(extra=True)
    assert set(extra.taskid[1:]) == {result.id}
    assert set(extra.trace_id[1:]) == {consumer.TraceId}


def test_print_keeps_stream_apart(worker, om):
    result = _send(om, "tests.print_bytes")
    assert wait_for(result, 30) == "ok"
    logs = om.telemetry.logs(attributes={"celery.task_id": result.id})
    stdout = logs[logs.ScopeName == "stdout"]
    assert list(stdout.Body) == ["raw \\xff\\xfe bytes", "after raw bytes"]
    assert {a["log.iostream"] for a in stdout.LogAttributes} == {"stdout"}


def test_burst_of_100k_records(worker, om):
    result = _send(om, "tests.log_burst", 100_000, "burst100k")
    assert wait_for(result, 240) == 100_000
    assert _count(om, result.id, "burst100k") == 100_000


def test_two_workers_and_a_client_at_once(worker, om, omtel_home):
    log = open(omtel_home / "worker2.log", "w")
    with worker_process(concurrency=2, stderr=log, queue="omegaml"):
        results = [_send(om, "tests.log_burst", 10_000, f"parallel{i}") for i in range(4)]
        client = logging.getLogger("client-burst")
        client.setLevel(logging.INFO)
        with om.logger.capture(client):
            for i in range(5_000):
                client.info("client record %d", i)
        assert [wait_for(r, 120) for r in results] == [10_000] * 4
    log.close()
    for i, r in enumerate(results):
        assert _count(om, r.id, f"parallel{i}") == 10_000
    assert len(om.telemetry.logs(ScopeName="client-burst")) == 5_000
    for name in ("worker.log", "worker2.log"):
        assert "database is locked" not in (omtel_home / name).read_text()


def test_recycled_children_lose_nothing(om, omtel_home):
    log = open(omtel_home / "recycle.log", "w")
    with worker_process(concurrency=2, stderr=log, queue="recycle", extra=["--max-tasks-per-child=1"]):
        results = [_send(om, "tests.log_burst", 500, "recycled", queue="recycle") for _ in range(6)]
        assert [wait_for(r, 60) for r in results] == [500] * 6
    log.close()
    for r in results:
        assert _count(om, r.id, "recycled") == 500
    # spans of recycled children are flushed at worker_process_shutdown, not lost with the child
    children = set()
    for r in results:
        spans = _wait_spans(om, r.id, 2)
        assert len(spans) == 2
        consumer = spans[spans.SpanKind == "Consumer"].iloc[0]
        children.add(consumer.ResourceAttributes["service.instance.id"])
    assert len(children) == 6  # one pool child per task: each was recycled after its task


def test_warm_shutdown_mid_burst_stores_everything(om, omtel_home):
    log = open(omtel_home / "term.log", "w")
    with worker_process(concurrency=1, stderr=log, queue="term") as proc:
        result = _send(om, "tests.log_burst", 3_000, "sigterm", queue="term", delay=0.001)
        deadline = time.monotonic() + 20
        while _count(om, result.id, "sigterm") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    log.close()
    assert result.get(timeout=10) == 3_000
    assert _count(om, result.id, "sigterm") == 3_000


def test_seed_logging_with_redis_broker(tmp_path):
    import redis

    redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    script = Path(__file__).parent / "support" / "scenarios" / "seed_logging.py"
    env = {**__import__("os").environ, "OMTEL_HOME": str(tmp_path), "OMTEL_BROKER": "redis://127.0.0.1:6379/5"}
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "seed logging ok" in run.stdout

"""The seed examples end to end on the broker servers users run: Redis and RabbitMQ (omega-ml's default broker).

Each test runs ``examples/quickstart.py`` (the seed page's example: its own ``omtel worker``, a ping with task logging
on, the log dataset read back, a named logger) with ``OMTEL_BROKER`` set, then checks what it left in its store.
The embedded filesystem broker runs the same script in tests/test_examples.py and the seed tests in
tests/test_seed_logging.py. The servers are the machine's own (127.0.0.1:6379 and :5672; ``.ci/run`` starts them
when down); each test gets an empty Redis database or a RabbitMQ virtual host of its own, so that no message left
over from another run can reach its worker, and removes it afterwards.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from omegaml_otel._internal.stores import open_store
from omegaml_otel.conventions import DATASET, TASK_ID

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:6379/<n>`` with an empty database n, flushed afterwards."""
    for db in range(15, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=db, socket_connect_timeout=5)
        if client.dbsize() == 0:
            break
    else:
        raise AssertionError("no empty database on the Redis server at 127.0.0.1:6379; flush one of 1-15")
    try:
        yield f"redis://127.0.0.1:6379/{db}"
    finally:
        client.flushdb()


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """``amqp://guest:guest@127.0.0.1:5672/<vhost>`` with a new virtual host, deleted afterwards."""
    vhost = f"omtel-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> None:
    proc = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)}: {proc.stderr.strip()} (is RabbitMQ up? see .ci/run)"


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis_url", "amqp_url"])
def test_seed_examples_on_a_broker_server(broker, request, tmp_path):
    url = request.getfixturevalue(broker)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(OMTEL_HOME=str(home), OMTEL_BROKER=url)
    proc = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "'kwargs': {'fox': 'bar'}" in proc.stdout and "some message" in proc.stdout

    store = open_store(f"sqlite:///{home / 'telemetry.sqlite'}")
    logs = store.logs()
    dataset = logs[[DATASET in a for a in logs.LogAttributes]]
    assert list(dataset.ScopeName) == ["system", "simple", "celery", "omegaml", "root", "mylogger"], dataset.Body
    assert dataset.Body.iloc[4].startswith("print log: running ping task")
    # the worker's records carry the task's id, and its run span is the child of the client's send span
    task_ids = {a.get(TASK_ID) for a in dataset.LogAttributes.iloc[1:5]}
    assert len(task_ids) == 1 and None not in task_ids
    spans = store.spans()
    sent = spans[spans.SpanName == "apply_async/omegaml.tasks.omega_ping"]
    run = spans[spans.SpanName == "run/omegaml.tasks.omega_ping"]
    pairs = run.merge(sent, on="TraceId", suffixes=("_run", "_sent"))
    assert (pairs.ParentSpanId_run == pairs.SpanId_sent).sum() >= 1, spans[["SpanName", "TraceId"]]

"""``opentelemetry-instrument celery -A theirapp worker`` where ``opentelemetry-distro`` and
``opentelemetry-exporter-otlp`` are installed too (the getting-started setup): the same data as without them.

Each case runs a real prefork worker (two pool children) and a client under ``opentelemetry-instrument`` in a
virtual environment that has both packages (``tests/support/distro_venv.py``). In that environment
``opentelemetry-distro``'s entry points are listed before omegaml-otel's, so with nothing chosen the order that
used to break is the one entry points give; the other order is forced with ``OTEL_PYTHON_DISTRO`` and
``OTEL_PYTHON_CONFIGURATOR``. The OTLP cases send to a real rotel (``tests/support/collector_path.py``) over HTTP and
over gRPC, whose exporter and grpcio come with ``opentelemetry-exporter-otlp``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest

from collector_path import collector_path, free_port, stop, wait_listening
from distro_venv import bin_env, distro_venv, instrument
from faults import hanging_listener
from omegaml_otel._internal.stores import Cond
from omegaml_otel._internal.stores.sqlite import SqliteStore

pytestmark = pytest.mark.slow
APP = Path(__file__).parent / "support" / "autoapp"
BURST = 5_000

CLIENT = r"""
import json
from userapp import add, burst, whoami

sums = [add.delay(i, 10) for i in range(2)]
ids = [r.id for r in sums]
assert [r.get(timeout=60, interval=0.01) for r in sums] == [10, 11]
pids = {}
for r in [whoami.delay(0.4) for _ in range(4)]:  # sent together: both pool children run some
    pids[r.id] = r.get(timeout=60, interval=0.01)
b = burst.delay(BURST)
assert b.get(timeout=60, interval=0.01) == BURST
print(json.dumps({"add": ids, "whoami": pids, "burst": b.id}))
""".replace("BURST", str(BURST))


@pytest.fixture(scope="module")
def python() -> Path:
    return distro_venv()


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory) -> int:
    """A private redis-server: the app's broker, so that tasks sent together arrive whole (see userapp.py)."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, 20, server, "redis-server")
        yield port
    finally:
        stop(server)


@pytest.fixture
def broker(redis_port) -> str:
    """An empty database of the private server for each test."""
    import redis

    redis.Redis(port=redis_port).flushall()
    return f"redis://127.0.0.1:{redis_port}/0"


def _env(python: Path, tmp_path: Path, broker: str | None = None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(PYTHONPATH=str(APP), USERAPP_FOLDER=str(tmp_path / "broker"), OMTEL_HOME=str(tmp_path / "home"),
               OTEL_SERVICE_NAME="userapp", **extra)
    if broker:
        env["USERAPP_BROKER"] = broker
    return bin_env(python, env)


@contextmanager
def _worker(python: Path, tmp_path: Path, env: dict, *worker_args: str) -> Iterator[subprocess.Popen]:
    """A prefork worker (two pool children) of the app under opentelemetry-instrument, its console in
    ``worker.log``; stopped with a warm shutdown (SIGTERM) at the end unless it ended before."""
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen([*instrument(python), "python", "-m", "celery", "-A", "userapp", "worker",
                                   "--pool=prefork", "--concurrency=2", "--loglevel=INFO", *worker_args],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield worker
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)


def _client(python: Path, env: dict, code: str) -> subprocess.CompletedProcess:
    client = subprocess.run([*instrument(python), "python", "-c", code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert client.returncode == 0, client.stderr[-3000:]
    return client


def _run(python: Path, tmp_path: Path, env: dict, *worker_args: str) -> tuple[dict, int, str]:
    """Worker and client under opentelemetry-instrument: the client's output, the worker's pid and its log."""
    with _worker(python, tmp_path, env, *worker_args) as worker:
        client = _client(python, env, CLIENT)
    return json.loads(client.stdout.strip().splitlines()[-1]), worker.pid, (tmp_path / "worker.log").read_text()


def _stored(tmp_path: Path, out: dict) -> SqliteStore:
    """The records of every task are in the embedded store, with task ids and spans of one trace each."""
    store = SqliteStore(tmp_path / "home" / "telemetry.sqlite", create=False)
    for i, task_id in enumerate(out["add"]):
        logs = store.logs(conds=[Cond("LogAttributes", "eq", task_id, key="celery.task_id")])
        assert {"userapp.tasks": f"adding {i} and 10", "stdout": f"sum is {i + 10}"}.items() <= dict(
            zip(logs.ScopeName, logs.Body)).items()
        spans = store.spans(conds=[Cond("SpanAttributes", "eq", task_id, key="messaging.message.id")])
        assert sorted(spans.SpanKind) == ["Consumer", "Producer"]
        assert set(logs.TraceId) == set(spans.TraceId)
    return store


def _ours(store: SqliteStore, out: dict, worker_pid: int) -> None:
    """omegaml-otel's pipeline built the providers: its resource, the burst kept whole (no-loss batching) and each
    pool child's records carrying that child's own process attributes."""
    burst = store.logs(conds=[Cond("LogAttributes", "eq", out["burst"], key="celery.task_id")])
    assert (burst.Body.str.startswith("burst ")).sum() == BURST
    assert "omegaml.user" in burst.ResourceAttributes.iloc[0]
    instances = {}
    for task_id, pid in out["whoami"].items():
        rows = store.logs(conds=[Cond("LogAttributes", "eq", task_id, key="celery.task_id")])
        resources = [r for r, body in zip(rows.ResourceAttributes, rows.Body) if body == "whoami"]
        assert len(resources) == 1
        assert int(resources[0]["process.pid"]) == pid
        assert int(resources[0]["process.parent_pid"]) == worker_pid
        instances[pid] = resources[0]["service.instance.id"]
    assert len(instances) == 2, instances  # both children ran tasks, each with its own instance id
    assert len(set(instances.values())) == 2


@pytest.mark.parametrize("choice", [
    {},  # nothing chosen: opentelemetry-distro's entry points come first
    {"OTEL_PYTHON_DISTRO": "omegaml_otel"},
    {"OTEL_PYTHON_DISTRO": "omegaml_otel", "OTEL_PYTHON_CONFIGURATOR": "omegaml_otel"},
    {"OTEL_PYTHON_CONFIGURATOR": "omegaml_otel"},
], ids=["unset", "distro", "distro+configurator", "configurator"])
def test_only_omtel_home_stores_everything_with_our_batching(python, broker, tmp_path, choice):
    out, worker_pid, log = _run(python, tmp_path, _env(python, tmp_path, broker, **choice))
    assert "Failed to auto initialize" not in log and "Traceback" not in log, log[-3000:]
    _ours(_stored(tmp_path, out), out, worker_pid)


@pytest.mark.parametrize("choice", [
    {"OTEL_PYTHON_DISTRO": "distro"},  # its configurator is listed first
    {"OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator"},
    {"OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "omegaml_otel"},  # ours runs first and hands over
    {"OTEL_PYTHON_CONFIGURATOR": "configurator"},  # our distro (its omtel defaults), the stock configurator
], ids=["distro", "distro+configurator", "distro+our-configurator", "our-distro+configurator"])
def test_a_selected_configurator_keeps_its_providers_and_our_instrumentors_use_them(python, broker, tmp_path,
                                                                                    choice):
    """The stock configurator, whichever way it is chosen: its SDK providers and batch processors stay, around the
    exporters it is told to use; our instrumentors tag and capture into them."""
    exporters = {} if "OTEL_PYTHON_DISTRO" not in choice else {
        "OTEL_TRACES_EXPORTER": "omtel", "OTEL_LOGS_EXPORTER": "omtel", "OTEL_METRICS_EXPORTER": "none"}
    out, _, log = _run(python, tmp_path, _env(python, tmp_path, broker, **choice, **exporters))
    assert "Traceback" not in log, log[-3000:]
    store = _stored(tmp_path, out)
    logs = store.logs(conds=[Cond("LogAttributes", "eq", out["add"][0], key="celery.task_id")])
    # the configurator's resource (the SDK's defaults), not ours
    assert all("omegaml.user" not in r and r["telemetry.sdk.name"] == "opentelemetry" for r in logs.ResourceAttributes)


def _otlp_env(python: Path, tmp_path: Path, broker: str, port: int, **extra) -> dict:
    return _env(python, tmp_path, broker, **{
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_BSP_SCHEDULE_DELAY": "100", **extra})


def _arrived(path, out: dict) -> None:
    """The burst arrives whole, through our batching (our resource), and both task spans."""
    wanted = f"SELECT count() FROM otel.otel_logs WHERE Body LIKE 'burst %' AND " \
             f"LogAttributes['celery.task_id'] = '{out['burst']}' AND ResourceAttributes['omegaml.user'] != ''"
    deadline = time.monotonic() + 30
    while int(path.scalar(wanted)) < BURST and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(path.scalar(wanted)) == BURST
    assert int(path.scalar("SELECT count() FROM otel.otel_traces WHERE SpanName = 'run/userapp.add'")) == 2


def test_otlp_goes_to_the_collector_through_our_batching(python, broker, tmp_path):
    with collector_path(tmp_path) as path:
        # the task spans end after their results are sent, and the worker is stopped right after the client: a
        # collector that answers slowly on a busy machine gets more than the default 2 s
        env = _otlp_env(python, tmp_path, broker, path.otlp_http_port, OMTEL_EXIT_TIMEOUT="20")
        out, _, log = _run(python, tmp_path, env)
        assert "Traceback" not in log, log[-3000:]
        _arrived(path, out)
    assert not (tmp_path / "home" / "telemetry.sqlite").exists()


def test_otlp_over_grpc_from_the_worker_and_recycled_pool_children(python, broker, tmp_path):
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the worker's main process exports its own log lines over gRPC before it
    forks its pool and again before each fork of a recycled child (--max-tasks-per-child=1); every process sends
    over a channel of its own, and the records of all of them arrive."""
    with collector_path(tmp_path) as path:
        env = _otlp_env(python, tmp_path, broker, path.otlp_grpc_port, OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                        OTEL_METRICS_EXPORTER="otlp", OTEL_METRIC_EXPORT_INTERVAL="200", OMTEL_EXIT_TIMEOUT="20")
        out, worker_pid, log = _run(python, tmp_path, env, "--max-tasks-per-child=1")
        # no call of gRPC was under way at a fork: gRPC would say (fork_posix.cc) that it skipped its fork handlers
        assert "Traceback" not in log and "cannot export" not in log and "fork_posix" not in log, log[-3000:]
        _arrived(path, out)
        pids = {int(pid) for pid in path.scalar(
            "SELECT arrayStringConcat(groupUniqArray(ResourceAttributes['process.pid']), ',') FROM otel.otel_logs "
            f"WHERE ResourceAttributes['process.parent_pid'] = '{worker_pid}' AND Body = 'whoami'").split(",")}
        assert pids == set(out["whoami"].values()) and len(pids) == 4  # one recycled child per task
        main = f"SELECT count() FROM otel.otel_logs WHERE ResourceAttributes['process.pid'] = '{worker_pid}'"
        assert int(path.scalar(main)) > 0  # the worker's own lines (ready, each child's replacement, shutdown)
        # the pool children's metrics, through the SDK's metric reader around our gRPC exporter
        runtime = "SELECT count() FROM otel.otel_metrics_histogram WHERE MetricName = 'flower.task.runtime.seconds'"
        assert int(path.scalar(runtime)) > 0


@pytest.mark.parametrize("collector", ["refusing", "hanging"])
def test_otlp_over_grpc_to_a_collector_that_is_down_keeps_a_warm_shutdown_within_the_exit_budget(
        python, broker, tmp_path, collector):
    """A refused gRPC connection fails the export at once, and a collector that never answers is waited for only
    as long as the caller may (the SDK's own timeout and retries inside one export take 10 s): a warm shutdown
    takes the exit budget of the pool children, then the main process's, and says what could not be sent."""
    with hanging_listener() if collector == "hanging" else nullcontext(free_port()) as port:
        # nothing is sent before the shutdown: each process's exit makes the export itself, within its budget
        env = _otlp_env(python, tmp_path, broker, port, OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OMTEL_EXIT_TIMEOUT="1",
                        OTEL_BLRP_SCHEDULE_DELAY="60000", OTEL_BSP_SCHEDULE_DELAY="60000")
        with _worker(python, tmp_path, env) as worker:
            _client(python, env, "from userapp import add; assert add.delay(1, 2).get(timeout=60) == 3")
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0
            shutdown_s = time.monotonic() - started
    text = (tmp_path / "worker.log").read_text()
    # a silent collector: the export either ran out of time itself, or was under way in the export thread when the
    # exit came (woken by the shutdown's flush) and was left to it
    failed = ("cannot reach the collector",) if collector == "refusing" else (
        "no answer from the collector", "the time left ran out while another export")
    assert any(f in text for f in failed) and "records could not be exported" in text, text[-3000:]
    assert shutdown_s < 2 * 1 + 5, shutdown_s  # two exit budgets, and Celery's own stop of its pool (a busy machine)


#: one export of the gRPC span exporter under a caller's bound: how long it took, and why it failed
BOUNDED_EXPORT = """
import json, sys, time
from omegaml_otel._internal import deadline
from omegaml_otel._internal.export.otlp import exporter
from omegaml_otel.errors import ExportFailed

grpc_exporter, _ = exporter("traces", "grpc")
started = time.monotonic()
try:
    with deadline.within(float(sys.argv[1])):
        grpc_exporter.export([])
except ExportFailed as exc:
    print(json.dumps({"s": time.monotonic() - started, "error": str(exc)}))
"""


@pytest.mark.parametrize("collector", ["refusing", "hanging"])
def test_a_grpc_export_gives_up_when_its_caller_does(python, tmp_path, collector):
    """Unbounded, the SDK's gRPC exporter retries a refused connection for 1 + 2 + 4 s and waits 10 s for a silent
    collector, whatever its caller has left. Ours fails at once when refused (the buffer retries on its back-off),
    and waits for a silent collector only as long as its caller may."""
    bound = 5.0 if collector == "refusing" else 1.0
    with hanging_listener() if collector == "hanging" else nullcontext(free_port()) as port:
        env = _otlp_env(python, tmp_path, None, port, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
        run = subprocess.run([str(python), "-c", BOUNDED_EXPORT, str(bound)], env=env, capture_output=True,
                             text=True, timeout=60)
    assert run.returncode == 0 and run.stdout, run.stderr
    out = json.loads(run.stdout)
    if collector == "refusing":
        assert out["s"] < 0.5 and "cannot reach the collector at 127.0.0.1:" in out["error"], out
        assert "Transient error" not in run.stderr, run.stderr  # no retry inside the export
    else:
        assert bound - 0.1 < out["s"] < bound + 0.5 and "no answer from the collector" in out["error"], out


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_grpc_is_loaded_only_by_a_process_that_sends_over_grpc(python, tmp_path, protocol):
    """Where the gRPC exporter is installed too, a process that sends over OTLP/HTTP does not load grpcio (its
    threads and its fork handlers)."""
    code = "import sys, omegaml_otel as om; om.logger.info('x'); print('grpc' in sys.modules)"
    env = _otlp_env(python, tmp_path, None, free_port(), OTEL_EXPORTER_OTLP_PROTOCOL=protocol, OMTEL_EXIT_TIMEOUT="0")
    run = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(protocol == "grpc")], run.stdout


HELLO = "import logging; logging.getLogger('hello').warning('hello'); print('printed')"


@pytest.mark.parametrize("configurator", [None, "omegaml_otel"])
def test_a_distro_picked_by_chance_is_said_with_the_fix(python, tmp_path, configurator):
    """Without the opentelemetry-instrument command (sitecustomize on PYTHONPATH, as the Kubernetes operator does)
    nothing chooses before the first distro found is run; whichever configurator runs, the message names the fix."""
    import opentelemetry.instrumentation.auto_instrumentation as auto

    env = _env(python, tmp_path, OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
               OTEL_METRICS_EXPORTER="none")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(auto.__file__).parent), env["PYTHONPATH"]])
    if configurator:
        env["OTEL_PYTHON_CONFIGURATOR"] = configurator
    run = subprocess.run([str(python), "-c", HELLO], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "printed" in run.stdout, run.stderr
    assert "picked the distro 'distro'" in run.stderr and "OTEL_PYTHON_DISTRO=omegaml_otel" in run.stderr


def test_sdk_disabled_turns_everything_off(python, tmp_path):
    env = _env(python, tmp_path, OTEL_SDK_DISABLED="true")
    run = subprocess.run([*instrument(python), "python", "-c", HELLO], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "printed\n" and "hello" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "home" / "telemetry.sqlite").exists()

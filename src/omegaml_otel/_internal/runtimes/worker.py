"""``omtel worker``: a Celery worker with this package's capture installed before the pool forks."""
from __future__ import annotations

import faulthandler
import logging
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

from celery import signals

from omegaml_otel._internal.capture.celery import CeleryInstrumentor
from omegaml_otel._internal.capture.logbridge import LogBridgeInstrumentor
from omegaml_otel._internal.capture.streams import StreamInstrumentor
from omegaml_otel._internal.runtimes.app import celery_app
from omegaml_otel._internal.runtimes.client import default_runtime, wait_for
from omegaml_otel._internal.runtimes.tasks import PING
from omegaml_otel.settings import settings

CONSOLE_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"


def _setup_logging(loglevel=None, **kwargs):
    """Connected to Celery's ``setup_logging``: Celery then neither clears root handlers nor redirects stdout,
    and we install a console handler, the log bridge and the stream bridge ourselves."""
    root = logging.getLogger()
    console = logging.StreamHandler(sys.__stderr__)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    root.addHandler(console)
    root.setLevel(loglevel or logging.INFO)
    LogBridgeInstrumentor().instrument(role="worker")
    StreamInstrumentor().instrument(role="worker")
    CeleryInstrumentor().instrument(role="worker")


def worker_argv(concurrency: int | None = None, loglevel: str = "INFO", pool: str = "prefork",
                max_tasks_per_child: int | None = None, hostname: str | None = None, queues: str = "omegaml",
                extra: list[str] | None = None) -> list[str]:
    cfg = settings()
    node = "omtel" if queues == "omegaml" else f"omtel-{queues.replace(',', '-')}"
    argv = ["worker", f"--concurrency={concurrency or cfg.worker_concurrency}", f"--loglevel={loglevel}",
            f"--pool={pool}", f"--hostname={hostname or node + '@' + cfg.hostname}", "-Q", queues,
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if max_tasks_per_child:
        argv.append(f"--max-tasks-per-child={max_tasks_per_child}")
    return argv + list(extra or [])


def run_worker(**kwargs) -> None:
    signals.setup_logging.connect(_setup_logging, weak=False)
    if not faulthandler.is_enabled() and sys.__stderr__ is not None:
        # a pool child killed by a fatal signal in C code (SIGSEGV, SIGBUS, SIGFPE, SIGABRT) runs no Python code
        # again, so its last records cannot be flushed; its Python traceback at least reaches the worker's console
        faulthandler.enable(file=sys.__stderr__, all_threads=True)
    celery_app().worker_main(worker_argv(**kwargs))


@contextmanager
def worker_process(concurrency: int = 2, timeout: float = 30, extra: list[str] | None = None,
                   env: dict | None = None, stderr=None, queue: str = "omegaml"):
    """An ``omtel worker`` subprocess that answers pings, stopped with a warm shutdown (SIGTERM) on exit.

    ``env`` replaces the environment of the worker (same OMTEL_* as this process by default); ``stderr`` is
    where its console output goes (a file object; default: discarded). ``queue`` is the one queue it consumes.
    """
    cmd = [sys.executable, "-m", "omegaml_otel.cli", "worker", f"--concurrency={concurrency}", f"--queues={queue}",
           *(extra or [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait_for(default_runtime().task(PING).apply_async(queue=queue), timeout=2)
                break
            except TimeoutError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"omtel worker did not answer a ping within {timeout}s "
                                       f"(exit code {proc.poll()}); run `omtel worker` by hand to see why")
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Warm shutdown (SIGTERM) of a worker process; killed only if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""The runtime client: ``om.runtime.mode()``, ``ping()``, ``task()`` and ``job()`` as omega-ml offers them."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult

from omegaml_otel._internal.capture.celery import CeleryInstrumentor
from omegaml_otel._internal.capture.context import last_sent, remember_sent
from omegaml_otel._internal.compat.logger import default_logger
from omegaml_otel._internal.runtimes.app import celery_app
from omegaml_otel._internal.runtimes.jobs import JobProxy
from omegaml_otel._internal.runtimes.tasklogging import resolve
from omegaml_otel._internal.runtimes.tasks import PING
from omegaml_otel._internal.secure import mask_url
from omegaml_otel.errors import NoWorkerError
from omegaml_otel.settings import settings

if TYPE_CHECKING:  # a reader: workers import this module and never load pandas (lean workers)
    from omegaml_otel._internal.compat.experiment import Experiment


class RuntimeTask:
    """A task by name, sent with the runtime's default kwargs (``__logging``, …)."""

    def __init__(self, runtime: Runtime, name: str):
        self.runtime = runtime
        self.name = name

    def apply_async(self, args=(), kwargs=None, **options) -> AsyncResult:
        app = self.runtime.app
        kwargs = {**(kwargs or {}), **self.runtime.task_kwargs}
        if self.name not in app.tasks and self.runtime.is_local:
            raise KeyError(f"unknown task {self.name!r}; registered tasks: "
                           f"{', '.join(sorted(t for t in app.tasks if not t.startswith('celery.')))}")
        if self.runtime.is_local:
            result = app.tasks[self.name].apply(args=args, kwargs=kwargs, **options)
        else:
            result = app.send_task(self.name, args=args, kwargs=kwargs, **options)
        remember_sent(result.id)
        return result

    def delay(self, *args, **kwargs) -> AsyncResult:
        return self.apply_async(args, kwargs)

    run = delay


class Runtime:
    def __init__(self):
        self._local = False
        self._logging: Any = None
        self._instrumented = False

    @property
    def last_task_id(self) -> str | None:
        """The id of the task this process sent last (``om.logger.dataset.get(wait=True)`` waits for its records)."""
        return last_sent()

    @property
    def app(self):
        if not self._instrumented:
            # the producer must be instrumented for the worker's spans to join the caller's trace
            CeleryInstrumentor().instrument(role="client")
            self._instrumented = True
        return celery_app()

    @property
    def is_local(self) -> bool:
        return self._local

    @property
    def task_kwargs(self) -> dict:
        return {"__logging": self._logging} if self._logging not in (None, False) else {}

    def mode(self, local: bool | None = None, logging: Any = None) -> Runtime:
        """``local=True`` runs tasks in this process; ``logging=`` True, a logger name, a level,
        (logger, level) or False captures the task's logs. Unlike omega-ml, ``mode(local=...)`` alone keeps the
        logging mode as it was."""
        if local is not None:
            self._local = bool(local)
        if logging is not None:
            resolve(logging)  # a clear error now rather than on the worker
            self._logging = logging
            if resolve(logging) is not None:
                default_logger().dataset.ensure()
        return self

    def task(self, name: str) -> RuntimeTask:
        return RuntimeTask(self, name)

    def experiment(self, name: str, provider: str | None = None, implied_run: bool = True, **kwargs) -> Experiment:
        """An experiment; ``with om.runtime.experiment('perf', provider='profiling') as exp:`` tracks every task
        sent inside the block. The provider chosen when the experiment was first used is kept, and the object is
        an instance of its tracker class (``OmegaSimpleTracker``, ``OmegaProfilingTracker``, ``NoTrackTracker``).
        ``recreate=True`` declares it anew with ``provider``, keeping its events (omega-ml's re-created tracker).
        Other keywords are the tracker's (``autotrack``, ``interval``, ``store``); unknown ones raise TypeError."""
        # a reader (exp.data() is a DataFrame): imported when used, so workers never load pandas (lean workers)
        from omegaml_otel._internal.compat.experiment import open_experiment

        self.app  # instrument the producer, so tasks carry the run's context to their workers
        return open_experiment(name, provider=provider, implied_run=implied_run, **kwargs)

    def job(self, name: str):
        """``om.runtime.job(name).run()``: run a job stored with ``om.jobs.put`` on a worker."""
        return JobProxy(self, name)

    def ping(self, *args, wait: bool = True, timeout: float = 10, **kwargs):
        result = self.task(PING).delay(*args, **kwargs)
        return wait_for(result, timeout) if wait else result


@lru_cache(maxsize=1)
def default_runtime() -> Runtime:
    """``om.runtime``: the process's runtime client."""
    return Runtime()


def wait_for(result: AsyncResult, timeout: float):
    """``result.get()`` that says what to do when no worker answers, instead of hanging."""
    try:
        return result.get(timeout=timeout, interval=0.01, propagate=True)
    except CeleryTimeoutError:
        if result.state == "PENDING":
            raise NoWorkerError(
                f"no worker answered task {result.id} within {timeout}s on broker "
                f"{mask_url(settings().broker_url)}; start one with `omtel worker` (same OMTEL_HOME/OMTEL_BROKER), "
                "or run in-process with "
                "om.runtime.mode(local=True)") from None
        raise

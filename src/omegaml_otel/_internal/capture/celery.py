"""CeleryInstrumentor: task runs as spans, and task logs that are stored before the result is sent.

Wraps the upstream ``opentelemetry-instrumentation-celery`` (producer ``apply_async/<task>`` and consumer
``run/<task>`` spans, context in the message headers) and adds what it lacks:

- every log record emitted while a task runs carries ``celery.task_id`` and ``celery.task_name`` (upstream only
  tags spans);
- log records are flushed *before* the backend publishes the result (``mark_as_done``/``mark_as_failure``), so a
  client's ``.get()`` followed by a read of the store never misses a row (upstream's ``task_postrun`` comes after
  the result is published); a task that emitted no record skips the flush (what is pending then is the previous
  task's tail, such as Celery's 'succeeded in' line, which the export thread writes in its next batch);
- all providers are flushed in ``worker_process_shutdown``, so recycled children (``max_tasks_per_child``) and
  warm shutdown lose nothing (a pool child leaves with ``os._exit``: no atexit handler runs);
- tasks sent inside an experiment's block are tracked on the worker (``TaskRun``).

Like contrib's instrumentors it takes ``tracer_provider``, ``logger_provider`` and ``meter_provider``; each one not
given is the package's pipeline's.
"""
from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Collection

from billiard.pool import Pool
from celery import signals
from celery.backends.base import Backend
from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.celery import CeleryInstrumentor as UpstreamCeleryInstrumentor
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from omegaml_otel._internal import deadline
from omegaml_otel._internal.capture import streams
from omegaml_otel._internal.capture.context import record_attributes
from omegaml_otel._internal.capture.hardware import warm_packages
from omegaml_otel._internal.capture.package import _instruments
from omegaml_otel._internal.capture.profiling import cpu_meter
from omegaml_otel._internal.capture.tracking import TaskRun
from omegaml_otel._internal.export.pipeline import emitter_for, pipeline
from omegaml_otel._internal.stores import prepare_pool_child
from omegaml_otel.conventions import TASK_END, TASK_END_SCOPE, TASK_ID, TASK_NAME, Event
from omegaml_otel.settings import settings

#: the backend calls that publish a task's outcome, and the experiment event each one ends a tracked run with
_BACKEND_CALLS = {"mark_as_done": Event.TASK_SUCCESS, "mark_as_failure": Event.TASK_FAILURE,
                  "mark_as_retry": Event.TASK_RETRY}
#: when _before_pool_fork last froze the collector's objects; forks less than _POOL_START seconds apart start a pool
_frozen_at: float | None = None
_POOL_START = 1.0


def _report(message: str) -> None:
    sys.__stderr__.write(f"omegaml-otel: {message}\n")


def _outcome(event: str, value) -> dict:
    return {"result": value} if event == Event.TASK_SUCCESS else {"exception": repr(value)}


def _postrun_event(state: str | None) -> str:
    return {"SUCCESS": Event.TASK_SUCCESS, "RETRY": Event.TASK_RETRY}.get(state, Event.TASK_FAILURE)


class CeleryInstrumentor(BaseInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs):
        given = {name: kwargs.get(name) for name in ("tracer_provider", "logger_provider", "meter_provider")}
        own = pipeline(kwargs.get("role")) if None in given.values() else None
        providers = {name: p or getattr(own, name) for name, p in given.items()}
        logger_provider = providers["logger_provider"]
        self._emitter = emitter_for(logger_provider)
        self._uses_pipeline = own is not None and logger_provider is own.logger_provider
        self._flush_logs: Callable[[], None] = own.flush_logs if self._uses_pipeline else _nothing
        self._handed = [p for p in given.values() if p is not None]
        self._pipeline = own
        self._upstream = UpstreamCeleryInstrumentor()
        if not self._upstream.is_instrumented_by_opentelemetry:
            self._upstream.instrument(tracer_provider=providers["tracer_provider"],
                                      meter_provider=providers["meter_provider"],
                                      use_span_links=kwargs.get("use_span_links", False))
        self._tokens = {}
        #: per running task: how many records the store's log buffer had taken when it started
        self._added_at_start: dict[str, int | None] = {}
        self._runs: dict[str, TaskRun] = {}
        cpu_meter()  # prime CPU percentages before the pool forks: a profiled task's first sample is meaningful
        signals.task_prerun.connect(self._prerun, weak=False)
        signals.task_postrun.connect(self._postrun, weak=False)
        signals.worker_process_shutdown.connect(self._shutdown, weak=False)
        signals.worker_shutdown.connect(self._shutdown, weak=False)
        for name in _BACKEND_CALLS:
            wrap_function_wrapper("celery.backends.base", f"Backend.{name}", self._flush_first)
        # every prefork pool forks its children here; Celery's worker_before_create_process signal is sent only by
        # the pool of an event loop (not on the filesystem broker, the embedded default)
        wrap_function_wrapper("billiard.pool", "Pool._create_worker_process", _before_pool_fork)

    def _uninstrument(self, **kwargs):
        global _frozen_at
        signals.task_prerun.disconnect(self._prerun)
        signals.task_postrun.disconnect(self._postrun)
        signals.worker_process_shutdown.disconnect(self._shutdown)
        signals.worker_shutdown.disconnect(self._shutdown)
        for name in _BACKEND_CALLS:
            unwrap(Backend, name)
        unwrap(Pool, "_create_worker_process")
        gc.unfreeze()  # what _before_pool_fork froze goes back to the collector
        _frozen_at = None
        self._upstream.uninstrument()

    def _prerun(self, task_id=None, task=None, args=None, kwargs=None, **_):
        self._added_at_start[task_id] = self._logs_added()
        attrs = {**record_attributes.get(), TASK_ID: task_id or "", TASK_NAME: task.name}
        self._tokens[task_id] = record_attributes.set(attrs)
        self._track_start(task_id, task, args, kwargs)

    def _track_start(self, task_id, task, args, kwargs) -> None:
        """A task sent inside an experiment block: task_call now, profiling while it runs."""
        try:
            run = TaskRun.from_context(task_id, task.name, kwargs, emitter=self._emitter)
            if run is not None:
                run.called(args, kwargs)
                self._runs[task_id] = run
        except Exception as exc:  # tracking must not fail the task
            _report(f"could not track task {task.name}[{task_id}]: {exc}")

    def _track_end(self, task_id, event: str, value) -> None:
        run = self._runs.pop(task_id, None)
        if run is not None:
            try:
                run.finished(event, _outcome(event, value))
            except Exception as exc:
                _report(f"could not record {event} of task {task_id}: {exc}")

    def _postrun(self, task_id=None, task=None, state=None, retval=None, **kwargs):
        if task_id in self._runs:  # eager tasks publish no result, so no backend call ended the run
            self._track_end(task_id, _postrun_event(state), retval)
        streams.flush_partial()
        self._added_at_start.pop(task_id, None)
        token = self._tokens.pop(task_id, None)
        if token is not None:
            try:
                record_attributes.reset(token)
            except ValueError:  # set in another context (thread pools): nothing to undo here
                pass
        if task is not None and task.request.is_eager:
            # eager tasks publish no result: flush here so the caller can read the rows right away
            self._flush_logs()

    def _flush_first(self, wrapped, instance, args, kwargs):
        if args and args[0] in self._runs:
            # the result is about to be published: its task_success/failure/retry event must be readable by then
            outcome = args[1] if len(args) > 1 else kwargs.get("result", kwargs.get("exc"))
            self._track_end(args[0], _BACKEND_CALLS[wrapped.__name__], outcome)
        streams.flush_partial()
        try:
            if args and wrapped.__name__ != "mark_as_retry":
                self._mark_task_end(args[0])
            if not args or self._emitted_since_start(args[0]):
                self._flush_logs()
        except Exception:  # never keep a result from being published
            pass
        return wrapped(*args, **kwargs)

    def _logs_added(self) -> int | None:
        """How many records the pipeline's store log buffer has taken so far; None where there is none to watch
        (the collector path, providers handed in), and so every pre-result flush runs."""
        buffer = self._pipeline.buffers.get("logs") if self._uses_pipeline else None
        return None if buffer is None else buffer.added

    def _emitted_since_start(self, task_id: str) -> bool:
        """Whether a record may have been emitted since the task started (by it, or by another task of a threads
        pool: then the flush runs too). A ping with logging off emits none: its pre-result flush, a SQLite write of
        the previous task's tail, was about half of the worker's extra time per task (docs/performance.md, 13)."""
        start = self._added_at_start.get(task_id)
        return start is None or start != self._logs_added()

    def _mark_task_end(self, task_id: str) -> None:
        """Where log records travel through a collector, emit one more record after all of a task's records.

        Log records leave a process in the order they were emitted, so once this one is in the store, so are the
        task's others: readers wait for it (``om.logger.dataset.get(wait=...)``). The embedded store needs no
        marker: a task's records are written before its result is published.
        """
        if self._uses_pipeline and settings().store_only("logs"):
            return
        self._emitter.emit(TASK_END_SCOPE, timestamp=time.time_ns(), severity_number=SeverityNumber.INFO,
                           severity_text="INFO", body="task end",
                           attributes={**record_attributes.get(), TASK_ID: task_id, TASK_END: True})

    def _shutdown(self, **kwargs):
        """The process is ending: within OMTEL_EXIT_TIMEOUT, whatever the store or collector does, export what is
        pending and report what could not be exported. A pool child exits right after; the main process goes on to
        its atexit handlers, which share the same exit clock."""
        budget = settings().exit_timeout
        deadline.exiting(budget)
        streams.flush_partial()
        if self._pipeline is not None:
            self._pipeline.shutdown()
        for provider in self._handed:  # their owner shuts them down at exit, which a pool child never reaches
            # the SDK's force_flush ignores its timeout and retries a down collector: left behind when time is up
            deadline.run_within(provider.force_flush, deadline.remaining(budget))


def _before_pool_fork(wrapped, instance, args, kwargs):
    """A prefork pool is about to fork a child.

    - Read the ``system`` event's package list once here (12 ms), so that no child's first profiled task reads it
      again (only workers warm it; a client never profiles a task).
    - Let the child write the embedded store through this process (stores/relay.py; OMTEL_STORE_RELAY=false: the
      child opens it itself).
    - Freeze the garbage collector's objects (``gc.freeze``): no later collection, in the child or in this
      process, writes to the objects the child shares with this process, which would copy every page they sit on.
      Celery's pool for event-loop brokers (Redis, RabbitMQ) collects right before each fork, and each such
      collection copied the pages of the children forked before (about 7 MB per child on Redis, docs/performance.md,
      12). What is frozen is never freed by the collector, so a fork that replaces a child (``max_tasks_per_child``,
      a crash) first collects what was made since the last fork. The forks that start the pool, a few ms apart,
      do not: a collection between them would copy pages the first children share.
    """
    global _frozen_at
    try:
        warm_packages()
        cfg = settings()
        if cfg.store_relay and cfg.writes_store():
            prepare_pool_child()
    except Exception as exc:  # the child then does both itself, as any process does
        _report(f"could not prepare a pool child: {exc}")
    now = time.monotonic()
    if _frozen_at is not None and now - _frozen_at > _POOL_START:
        gc.collect()  # what is frozen is not looked at: this costs only what was made since the last fork
    gc.freeze()
    _frozen_at = now
    return wrapped(*args, **kwargs)



def _nothing() -> None:
    """Flushing a provider handed in by someone else is left to its own processors' schedule."""

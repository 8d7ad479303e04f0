"""CeleryInstrumentor: task runs as spans, and task logs that are stored before the result is sent.

Wraps the upstream ``opentelemetry-instrumentation-celery`` (producer ``apply_async/<task>`` and consumer
``run/<task>`` spans, context in the message headers) and adds what it lacks (otel-notes §1.5-1.6):

- every log record emitted while a task runs carries ``celery.task_id`` and ``celery.task_name``;
- log records are flushed *before* the backend publishes the result (``mark_as_done``/``mark_as_failure``), so a
  client's ``.get()`` followed by a read of the store never misses a row;
- all providers are flushed in ``worker_process_shutdown``, so recycled children (``max_tasks_per_child``) and
  warm shutdown lose nothing.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Collection

from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.celery import CeleryInstrumentor as UpstreamCeleryInstrumentor
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from omegaml_otel.capture import streams
from omegaml_otel.capture.context import record_attributes
from omegaml_otel.capture.package import _instruments
from omegaml_otel.export.providers import telemetry

_BACKEND_CALLS = ("mark_as_done", "mark_as_failure", "mark_as_retry")


#: scope and attribute of the record that closes a task's records on the collector path (see mark_task_end)
TASK_END_SCOPE = "omegaml_otel.task"
TASK_END_ATTR = "omegaml.task.end"


def mark_task_end(task_id: str) -> None:
    """Where log records travel through a collector, emit one more record after all of a task's records.

    Log records leave a process in the order they were emitted, so once this one is in the store, so are the
    task's others: readers wait for it (``om.logger.dataset.get(wait=...)``). The embedded store needs no marker:
    a task's records are written before its result is published.
    """
    from omegaml_otel.export.emitter import emitter_for
    from omegaml_otel.settings import STORE_EXPORTER, settings

    if settings().exporters["logs"] == (STORE_EXPORTER,):
        return
    emitter_for().emit(TASK_END_SCOPE, timestamp=time.time_ns(), severity_number=SeverityNumber.INFO,
                       severity_text="INFO", body="task end",
                       attributes={**record_attributes.get(), "celery.task_id": task_id, TASK_END_ATTR: True})


def _report(message: str) -> None:
    sys.__stderr__.write(f"omegaml-otel: {message}\n")


def _outcome(state: str | None, retval) -> tuple[str, dict]:
    if state == "SUCCESS":
        return "task_success", {"result": retval}
    if state == "RETRY":
        return "task_retry", {"exception": repr(retval)}
    return "task_failure", {"exception": repr(retval)}


class CeleryInstrumentor(BaseInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs):
        from celery import signals

        self._telemetry = telemetry(kwargs.get("role"))
        self._upstream = UpstreamCeleryInstrumentor()
        if not self._upstream.is_instrumented_by_opentelemetry:
            self._upstream.instrument(tracer_provider=self._telemetry.tracer_provider,
                                      meter_provider=self._telemetry.meter_provider,
                                      use_span_links=kwargs.get("use_span_links", False))
        self._tokens = {}
        self._runs = {}
        from omegaml_otel.capture.profiling import cpu_meter

        cpu_meter()  # prime CPU percentages before the pool forks: a profiled task's first sample is meaningful
        signals.task_prerun.connect(self._prerun, weak=False)
        signals.task_postrun.connect(self._postrun, weak=False)
        signals.worker_process_shutdown.connect(self._shutdown, weak=False)
        signals.worker_shutdown.connect(self._shutdown, weak=False)
        for name in _BACKEND_CALLS:
            wrap_function_wrapper("celery.backends.base", f"Backend.{name}", self._flush_first)

    def _uninstrument(self, **kwargs):
        from celery import signals
        from celery.backends.base import Backend

        signals.task_prerun.disconnect(self._prerun)
        signals.task_postrun.disconnect(self._postrun)
        signals.worker_process_shutdown.disconnect(self._shutdown)
        signals.worker_shutdown.disconnect(self._shutdown)
        for name in _BACKEND_CALLS:
            unwrap(Backend, name)
        self._upstream.uninstrument()

    def _prerun(self, task_id=None, task=None, args=None, kwargs=None, **_):
        attrs = {**record_attributes.get(), "celery.task_id": task_id or "", "celery.task_name": task.name}
        self._tokens[task_id] = record_attributes.set(attrs)
        self._track_start(task_id, task, args, kwargs)

    def _track_start(self, task_id, task, args, kwargs) -> None:
        """A task sent inside an experiment block: task_call now, profiling while it runs."""
        from omegaml_otel.compat.experiment import TaskRun

        try:
            run = TaskRun.from_context(task_id, task.name, kwargs)
            if run is not None:
                run.called(args, kwargs)
                self._runs[task_id] = run
        except Exception as exc:  # tracking must not fail the task
            _report(f"could not track task {task.name}[{task_id}]: {exc}")

    def _track_end(self, task_id, event: str, value: dict) -> None:
        run = self._runs.pop(task_id, None)
        if run is not None:
            try:
                run.finished(event, value)
            except Exception as exc:
                _report(f"could not record {event} of task {task_id}: {exc}")

    def _postrun(self, task_id=None, task=None, state=None, retval=None, **kwargs):
        if task_id in self._runs:  # eager tasks publish no result, so no backend call ended the run
            self._track_end(task_id, *_outcome(state, retval))
        streams.flush_partial()
        token = self._tokens.pop(task_id, None)
        if token is not None:
            try:
                record_attributes.reset(token)
            except ValueError:  # set in another context (thread pools): nothing to undo here
                pass
        if task is not None and task.request.is_eager:
            # eager tasks publish no result: flush here so the caller can read the rows right away
            self._telemetry.flush_logs()

    def _flush_first(self, wrapped, instance, args, kwargs):
        if args and args[0] in self._runs:
            # the result is about to be published: its task_success/failure/retry event must be readable by then
            event = {"mark_as_done": "task_success", "mark_as_failure": "task_failure",
                     "mark_as_retry": "task_retry"}[wrapped.__name__]
            outcome = args[1] if len(args) > 1 else kwargs.get("result", kwargs.get("exc"))
            self._track_end(args[0], event, {"result": outcome} if event == "task_success"
                            else {"exception": repr(outcome)})
        streams.flush_partial()
        try:
            if args and wrapped.__name__ != "mark_as_retry":
                mark_task_end(args[0])
            self._telemetry.flush_logs()
        except Exception:  # never keep a result from being published
            pass
        return wrapped(*args, **kwargs)

    def _shutdown(self, **kwargs):
        """The process is ending (a pool child leaves with os._exit, so atexit never runs): export what is
        pending and report what could not be exported."""
        streams.flush_partial()
        self._telemetry.shutdown()

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

from collections.abc import Collection

from opentelemetry.instrumentation.celery import CeleryInstrumentor as UpstreamCeleryInstrumentor
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from omegaml_otel.capture import streams
from omegaml_otel.capture.context import record_attributes
from omegaml_otel.capture.package import _instruments
from omegaml_otel.export.providers import telemetry

_BACKEND_CALLS = ("mark_as_done", "mark_as_failure", "mark_as_retry")


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

    def _prerun(self, task_id=None, task=None, **kwargs):
        attrs = {**record_attributes.get(), "celery.task_id": task_id or "", "celery.task_name": task.name}
        self._tokens[task_id] = record_attributes.set(attrs)

    def _postrun(self, task_id=None, task=None, **kwargs):
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
        streams.flush_partial()
        try:
            self._telemetry.flush_logs()
        except Exception:  # never keep a result from being published
            pass
        return wrapped(*args, **kwargs)

    def _shutdown(self, **kwargs):
        streams.flush_partial()
        self._telemetry.flush()

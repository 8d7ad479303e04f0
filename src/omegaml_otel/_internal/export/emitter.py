"""LogEmitter: the one way this package emits OpenTelemetry log records.

With the embedded store as the only log destination (the default), a record goes straight into the store's
no-loss buffer as a light ``StoreLogRecord`` with the fields the store writes, skipping the SDK's
``LogRecord``/``ReadWriteLogRecord``/``BoundedAttributes`` construction, which costs more than the rest of a bridged
``logger.info()`` together (docs/performance.md). With any other exporter configured, or providers built by
someone else, records go through the SDK ``Logger`` as usual. Either way secrets are scrubbed here first
(``scrub.py``): this is the one place every log record of the package passes. The fast path applies the SDK's
attribute limits (``LogRecordLimits``) exactly as the SDK does, with the SDK's own ``BoundedAttributes``, but only
to a record that a limit can change: one with more attributes than the count limit, or any record when a value
length limit is set.
"""
from __future__ import annotations

import time
from typing import Any

from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordLimits
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import get_current_span

from omegaml_otel._internal.export.buffer import ExportBuffer
from omegaml_otel._internal.export.scrub import Scrubber, default_scrubber

__all__ = ["LogEmitter", "StoreLogRecord"]


class StoreLogRecord:
    """What ``rows.log_rows`` reads of an SDK record (it reads ``.log_record``, ``.resource`` and
    ``.instrumentation_scope``; this object is its own ``log_record``)."""

    __slots__ = ("timestamp", "observed_timestamp", "trace_id", "span_id", "trace_flags", "severity_text",
                 "severity_number", "body", "attributes", "event_name", "resource", "instrumentation_scope")

    def __init__(self, timestamp, observed_timestamp, trace_id, span_id, trace_flags, severity_text,
                 severity_number, body, attributes, event_name, resource, instrumentation_scope):
        self.timestamp = timestamp
        self.observed_timestamp = observed_timestamp
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_flags = trace_flags
        self.severity_text = severity_text
        self.severity_number = severity_number
        self.body = body
        self.attributes = attributes
        self.event_name = event_name
        self.resource = resource
        self.instrumentation_scope = instrumentation_scope

    @property
    def log_record(self) -> StoreLogRecord:
        return self


class LogEmitter:
    def __init__(self, provider: LoggerProvider, buffer: ExportBuffer | None = None,
                 scrubber: Scrubber | None = None, limits: LogRecordLimits | None = None):
        """``scrubber``: the process's (as the settings say; None when OMTEL_SCRUB is off) when not given.
        ``limits``: the attribute limits of the fast path (``buffer``), the same as the provider's."""
        self._provider = provider
        self._buffer = buffer
        limits = limits or LogRecordLimits()
        self._max_attributes = limits.max_log_record_attributes
        self._max_length = limits.max_log_record_attribute_length
        self.scrubber = scrubber or default_scrubber()
        self._loggers: dict[str, Any] = {}
        self._scopes: dict[str, InstrumentationScope] = {}

    def emit(self, scope: str, *, timestamp: int, severity_number: SeverityNumber, severity_text: str, body: Any,
             attributes: dict[str, Any], event_name: str | None = None, context: Context | None = None) -> None:
        scrubber = self.scrubber
        if scrubber is not None:
            if attributes:
                attributes = scrubber.attributes(attributes)
            if type(body) is str:
                body = scrubber.text(body)
        if self._buffer is None:
            logger = self._loggers.get(scope)
            if logger is None:
                logger = self._loggers[scope] = self._provider.get_logger(scope)
            logger.emit(timestamp=timestamp, observed_timestamp=time.time_ns(), severity_number=severity_number,
                        severity_text=severity_text, body=body, attributes=attributes, event_name=event_name,
                        context=context)
            return
        if attributes and (self._max_length is not None or (self._max_attributes is not None
                                                            and len(attributes) > self._max_attributes)):
            attributes = BoundedAttributes(maxlen=self._max_attributes, attributes=attributes, immutable=False,
                                           max_value_len=self._max_length, extended_attributes=True)
        ctx = get_current_span(context).get_span_context()
        instrumentation_scope = self._scopes.get(scope)
        if instrumentation_scope is None:
            instrumentation_scope = self._scopes[scope] = InstrumentationScope(scope)
        self._buffer.add(StoreLogRecord(
            timestamp, time.time_ns(), ctx.trace_id if ctx.is_valid else 0, ctx.span_id if ctx.is_valid else 0,
            ctx.trace_flags if ctx.is_valid else 0, severity_text, severity_number, body, attributes, event_name,
            self._provider.resource, instrumentation_scope))

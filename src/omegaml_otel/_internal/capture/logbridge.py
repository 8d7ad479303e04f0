"""LogBridge: Python ``logging`` records become OpenTelemetry log records.

Compared with the stock OTel handler it caches one OTel logger per logger name, copies only the ``extra``
attributes a record really has, and skips records that are already bridged (``claim=True`` handlers mark them), so
a record seen by a task-capture handler and then by the root handler is stored once. Records from OpenTelemetry's
own loggers, and anything logged while an exporter writes, are never bridged (no export feedback loop).

``extra=`` never overrides what the package itself says about a record (its task, dataset, level, exception): an
extra whose key the record already has, or that is in the package's namespaces (``omegaml.*``, ``celery.*``), is
stored as ``extra.<key>`` instead, so nothing is lost and nothing is forged. A record whose message cannot be turned
into text (a ``__str__`` that raises) is kept with a placeholder body that names the error: a logging call never
raises and never silently loses its record because of telemetry.
"""
from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Collection, Mapping
from typing import Any

from celery import signals
from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_current
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk._logs._internal import std_to_otel

from omegaml_otel._internal import guard
from omegaml_otel._internal.capture.context import record_attributes
from omegaml_otel._internal.export.pipeline import emitter_for, pipeline
from omegaml_otel.conventions import RENAMED_EXTRA_PREFIX

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName",
                                                                               "_omtel_bridged"}
_PLAIN_RECORD_FIELDS = len(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_SEVERITY: dict[int, SeverityNumber] = {}
CLAIMED = "_omtel_bridged"
#: extras in these namespaces are the package's to set (omegaml.levelno, celery.task_id, ...)
_OWN_PREFIXES = ("omegaml.", "celery.")


def severity(levelno: int) -> SeverityNumber:
    sev = _SEVERITY.get(levelno)
    if sev is None:
        sev = _SEVERITY[levelno] = std_to_otel(levelno)
    return sev


def message(record: logging.LogRecord) -> str:
    """``getMessage()``, but a record whose args do not fit its format is kept as msg + args, and one whose msg or
    args cannot be made text gets a placeholder naming the error: the record is kept either way."""
    try:
        return record.getMessage()
    except Exception:
        return f"{safe_str(record.msg)} {safe_str(record.args, repr)}"


def safe_str(value: Any, convert=str) -> str:
    """``str(value)`` (or ``repr``), or a placeholder naming the error when the object's own method raises."""
    try:
        return convert(value)
    except Exception as exc:
        return f"<unprintable {type(value).__name__} object: {type(exc).__name__} in {convert.__name__}()>"


class LogBridge(logging.Handler):
    def __init__(self, level: int = logging.NOTSET, *, logger_provider: LoggerProvider | None = None,
                 attributes: Mapping[str, Any] | None = None, claim: bool = False):
        super().__init__(level)
        self._emitter = emitter_for(logger_provider)
        self._attributes = dict(attributes or {})
        self._claim = claim

    def handle(self, record: logging.LogRecord) -> bool:
        """No handler lock: emitting is thread-safe (the export buffer locks), and this is the hot path."""
        if guard.active() or getattr(record, CLAIMED, False) or record.name.startswith("opentelemetry"):
            return False
        ctx = get_current()
        if ctx.get(_SUPPRESS_INSTRUMENTATION_KEY):  # an SDK exporter thread is exporting (urllib3 warnings…)
            return False
        if self.filters and not self.filter(record):
            return False
        self._bridge(record, ctx)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._bridge(record, get_current())

    def _bridge(self, record: logging.LogRecord, ctx) -> None:
        try:
            attrs = record_attributes.get()  # shared, never mutated: copied below only when adding to it
            if self._attributes:
                attrs = {**attrs, **self._attributes}
            if record.exc_info and record.exc_info[0] is not None:
                attrs = dict(attrs)
                etype, evalue, tb = record.exc_info
                attrs["exception.type"] = etype.__name__
                attrs["exception.message"] = safe_str(evalue)
                attrs["exception.stacktrace"] = "".join(traceback.format_exception(etype, evalue, tb))
            fields = record.__dict__
            if len(fields) > _PLAIN_RECORD_FIELDS:  # only then can the record carry extra={...} attributes
                attrs = self._extras(fields, attrs)
            self._emitter.emit(record.name or "root", timestamp=int(record.created * 1e9),
                               severity_number=severity(record.levelno), severity_text=record.levelname,
                               body=message(record), attributes=attrs, context=ctx)
            if self._claim:
                setattr(record, CLAIMED, True)
        except Exception:
            self.handleError(record)

    def _extras(self, fields: dict, attrs: dict) -> dict:
        """The record's ``extra=`` fields added to ``attrs`` (a copy): the package's own attributes win, the user's
        value is kept under ``extra.<key>``; containers are scrubbed as data before they become text."""
        shared = attrs
        scrubber = self._emitter.scrubber
        for key in fields.keys() - _RESERVED:
            if attrs is shared:
                attrs = dict(attrs)
            value = fields[key]
            if not isinstance(value, (str, int, float, bool)):
                if scrubber is not None and isinstance(value, (dict, list, tuple, set)):
                    value = scrubber.value(value)  # Celery's own `data`: the task's kwargs, by key
                value = safe_str(value)
            if key in shared or key.startswith(_OWN_PREFIXES):
                key = RENAMED_EXTRA_PREFIX + key
            attrs[key] = value
        return attrs

    def handleError(self, record: logging.LogRecord) -> None:
        # never raise into the caller's logging call; say so once on the real stderr
        if not getattr(self, "_reported", False):
            self._reported = True
            sys.__stderr__.write(f"omegaml-otel: could not bridge a log record of {record.name!r}: "
                                 f"{traceback.format_exc(limit=2)}\n")


class LogBridgeInstrumentor(BaseInstrumentor):
    """Bridges the root logger (``logger_provider``: the pipeline's when not given), and re-attaches after Celery
    clears the root handlers: a worker with ``worker_hijack_root_logger`` (the default) removes every root handler
    in its logging setup, after instrumentors ran."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs):
        provider = kwargs.get("logger_provider") or pipeline(kwargs.get("role")).logger_provider
        self.handler = LogBridge(kwargs.get("level", logging.NOTSET), logger_provider=provider)
        self._attach()
        signals.after_setup_logger.connect(self._attach, weak=False)
        signals.after_setup_task_logger.connect(self._attach, weak=False)

    def _attach(self, *args, **kwargs):
        root = logging.getLogger()
        if self.handler not in root.handlers:
            root.addHandler(self.handler)

    def _uninstrument(self, **kwargs):
        logging.getLogger().removeHandler(self.handler)
        signals.after_setup_logger.disconnect(self._attach)
        signals.after_setup_task_logger.disconnect(self._attach)

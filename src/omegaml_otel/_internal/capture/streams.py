"""StreamBridge: ``print()`` and writes to ``sys.stdout``/``sys.stderr`` become log records.

Each complete line becomes one OTel log record tagged ``log.iostream`` (scope ``stdout``/``stderr``, severity INFO
and ERROR), and is written through to the original stream so the console still shows it. Inside a task run with
omega-ml's logging mode, lines are instead logged to the selected Python logger at the selected level
(``redirect``), as omega-ml's worker does, so they appear in ``om.logger.dataset.get()``.
"""
from __future__ import annotations

import codecs
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Collection
from contextlib import contextmanager
from contextvars import ContextVar

from celery import signals
from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from omegaml_otel._internal import guard
from omegaml_otel._internal.capture.context import record_attributes
from omegaml_otel._internal.export.pipeline import emitter_for, pipeline
from omegaml_otel.conventions import IOSTREAM

#: (python logger, level) that print output goes to while an omega-ml task logging mode is active
redirect: ContextVar[tuple[logging.Logger, int] | None] = ContextVar("omtel_stream_redirect", default=None)


class StreamBridge(io.TextIOBase):
    def __init__(self, stream, name: str, logger_provider: LoggerProvider):
        self.original = stream
        self.name = name
        self._severity = (SeverityNumber.INFO, "INFO") if name == "stdout" else (SeverityNumber.ERROR, "ERROR")
        self._provider = logger_provider
        self._emitter = None
        self._partial = ""
        self._buffer: _BytesBridge | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    # -- the text-stream API ------------------------------------------------------------------------------------
    def write(self, s) -> int:
        if not isinstance(s, str):
            s = s.decode("utf-8", "backslashreplace") if isinstance(s, (bytes, bytearray)) else str(s)
        if guard.active():
            return self._passthrough(s)
        with self._lock:
            data = self._partial + s
            *lines, self._partial = data.split("\n")
        target = redirect.get()
        for line in lines:
            self._emit(line, target)
        if target is None:
            self._passthrough(s)
        return len(s)

    def _passthrough(self, s: str) -> int:
        if self.original is None:
            return len(s)
        with guard.suppressed():
            try:
                return self.original.write(s)
            except (ValueError, OSError):  # closed console: the record is already captured
                return len(s)

    def flush(self) -> None:
        if self.original is not None:
            try:
                self.original.flush()
            except (ValueError, OSError):
                pass

    def flush_partial(self) -> None:
        """Emit an unterminated last line (at the end of a task)."""
        with self._lock:
            line, self._partial = self._partial, ""
        if line:
            self._emit(line, redirect.get())

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(self.original is not None and getattr(self.original, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self):
        return getattr(self.original, "encoding", "utf-8")

    @property
    def errors(self):
        return getattr(self.original, "errors", "strict")

    @property
    def buffer(self):
        if self._buffer is None:
            self._buffer = _BytesBridge(self)
        return self._buffer

    # -- emit ---------------------------------------------------------------------------------------------------
    def _emit(self, line: str, target) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        try:
            if target is not None:
                logger, level = target
                logger.log(level, line, extra={IOSTREAM: self.name})
                return
            if self._emitter is None:
                self._emitter = emitter_for(self._provider)
            attrs = dict(record_attributes.get())
            attrs[IOSTREAM] = self.name
            self._emitter.emit(self.name, timestamp=time.time_ns(), severity_number=self._severity[0],
                               severity_text=self._severity[1], body=line, attributes=attrs)
        except Exception:  # a print must never fail because of telemetry
            pass


class _BytesBridge(io.RawIOBase):
    """``sys.stdout.buffer``: bytes that are not UTF-8 are kept as backslash escapes, never dropped; a character
    split across two writes is decoded whole."""

    def __init__(self, bridge: StreamBridge):
        self._bridge = bridge
        self._decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._bridge.write(self._decoder.decode(bytes(b)))
        return len(b)

    def flush(self) -> None:
        self._bridge.flush()


def install(logger_provider: LoggerProvider) -> None:
    """Wrap the current sys.stdout/sys.stderr (idempotent)."""
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if not isinstance(current, StreamBridge):
            setattr(sys, name, StreamBridge(current, name, logger_provider))


def uninstall() -> None:
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if isinstance(current, StreamBridge):
            current.flush_partial()
            setattr(sys, name, current.original)


def flush_partial() -> None:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, StreamBridge):
            stream.flush_partial()


class StreamInstrumentor(BaseInstrumentor):
    """Bridges sys.stdout/sys.stderr (``logger_provider``: the pipeline's when not given); in a Celery worker also
    after Celery redirected them (per pool child)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs):
        self._provider = kwargs.get("logger_provider") or pipeline(kwargs.get("role")).logger_provider
        install(self._provider)
        signals.worker_process_init.connect(self._reinstall, weak=False)

    def _reinstall(self, **kwargs):
        install(self._provider)

    def _uninstrument(self, **kwargs):
        uninstall()
        signals.worker_process_init.disconnect(self._reinstall)


@contextmanager
def installed(logger_provider: LoggerProvider):
    """Bridge the streams for the duration of a block (tasks run in-process with ``mode(local=True)``)."""
    if isinstance(sys.stdout, StreamBridge) and isinstance(sys.stderr, StreamBridge):
        yield
        return
    saved = sys.stdout, sys.stderr
    install(logger_provider)
    try:
        yield
    finally:
        flush_partial()
        sys.stdout, sys.stderr = saved

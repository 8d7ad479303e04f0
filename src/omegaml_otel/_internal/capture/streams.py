"""StreamBridge: ``print()`` and writes to ``sys.stdout``/``sys.stderr`` become log records.

Each complete line becomes one OTel log record tagged ``log.iostream`` (scope ``stdout``/``stderr``, severity INFO
and ERROR), and is written through to the original stream so the console still shows it. Inside a task run with
omega-ml's logging mode, lines are instead logged to the selected Python logger at the selected level
(``redirect``), as omega-ml's worker does, so they appear in ``om.logger.dataset.get()``.

Progress bars (tqdm, keras) rewrite one line thousands of times with ``\\r`` and no newline. A line keeps only its
text after the last ``\\r`` (what Jupyter shows; a bar redraws the whole line, so it is also what a terminal shows),
so 20,000 updates make one record of the final state, at the cost of the text written. The unterminated part of a
line is kept as a list of pieces, never re-copied on each write. A line longer than ``OMTEL_MAX_LINE`` characters
is split into records of that size, each but the last ending with ``CONTINUED``, so memory and record size stay
bounded even for output that never ends a line.

``sys.stdout`` is one object for the whole process, but tasks of a threads or gevent pool print at the same time:
each context (a thread, a greenlet, an asyncio task) keeps its own unterminated line, and each line is emitted with
the record attributes and the task logging mode of the context that wrote it. Two tasks' halves of a line are never
joined, and a print is never attributed to another task.
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
from omegaml_otel.settings import settings

#: (python logger, level) that print output goes to while an omega-ml task logging mode is active
redirect: ContextVar[tuple[logging.Logger, int] | None] = ContextVar("omtel_stream_redirect", default=None)
#: ends each record of a line that was split at OMTEL_MAX_LINE characters, but the last
CONTINUED = " [line continues in the next record]"


class StreamBridge(io.TextIOBase):
    def __init__(self, stream, name: str, logger_provider: LoggerProvider, max_line: int | None = None):
        """``max_line``: OMTEL_MAX_LINE when not given."""
        self.original = stream
        self.name = name
        self._severity = (SeverityNumber.INFO, "INFO") if name == "stdout" else (SeverityNumber.ERROR, "ERROR")
        self._provider = logger_provider
        self._emitter = None
        self.max_line = max_line or settings().max_line
        #: the unterminated line of the writing context; its contexts' are separate (see the module doc)
        self._line: ContextVar[_Line] = ContextVar(f"omtel_{name}_line")
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
        line = self.current_line()
        with self._lock:  # a line object can be shared by contexts copied from one another (asyncio, executors)
            if "\n" in s:
                *ends, rest = s.split("\n")
                lines = []
                for end in ends:
                    self._add(line, end, lines)
                    lines.append(line.take())
                self._add(line, rest, lines)
            else:
                lines = self._add(line, s, None)
        target = redirect.get()
        if lines:
            for line in lines:
                self._emit(line, target)
        if target is None:
            self._passthrough(s)
        return len(s)

    def current_line(self) -> _Line:
        """The writing context's unterminated line (made on its first write)."""
        line = self._line.get(None)
        if line is None:
            line = _Line()
            self._line.set(line)
        return line

    def _add(self, line: _Line, text: str, lines: list[str] | None) -> list[str] | None:
        """Add ``text`` (no newline in it) to the unterminated ``line``, under the lock. A \\r makes the text after
        it the whole line, except a \\r at the end: that one waits, as it may be the first half of a \\r\\n."""
        if not text:
            return lines
        core = text.rstrip("\r")
        if not core:  # only \r: whatever comes next starts the line afresh
            line.cr = True
            return lines
        cut = core.rfind("\r")
        if cut >= 0 or line.cr:
            line.pieces, line.size = [], 0
        line.cr = len(core) < len(text)
        if cut >= 0:
            core = core[cut + 1:]
        line.pieces.append(core)
        line.size += len(core)
        if line.size > self.max_line:
            lines = self._split(line, lines)
        return lines

    def _split(self, line: _Line, lines: list[str] | None) -> list[str]:
        """Cut records of ``max_line`` characters off a line that grew longer than that."""
        data = "".join(line.pieces)
        lines = [] if lines is None else lines
        n = self.max_line
        while len(data) > n:
            lines.append(data[:n] + CONTINUED)
            data = data[n:]
        line.pieces, line.size = [data], len(data)
        return lines

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
        """Emit the writing context's unterminated last line (at the end of a task)."""
        with self._lock:
            line = self.current_line().take()
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


class _Line:
    """The unterminated line of one context: its pieces since the last \\r, their length, and whether a \\r ended
    the last one. Pieces are joined once, when the line ends, never re-copied on each write."""

    __slots__ = ("pieces", "size", "cr")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.size = 0
        self.cr = False

    def take(self) -> str:
        """The line, now ended (under the bridge's lock)."""
        text = self.pieces[0] if len(self.pieces) == 1 else "".join(self.pieces)
        self.pieces, self.size, self.cr = [], 0, False
        return text


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

"""A per-thread flag that stops telemetry from capturing itself.

Set while an exporter writes, so anything it logs or prints is not bridged back into the pipeline: an export error
logged from the export thread would otherwise become a new record, be exported again and fail again, a feedback
loop the OpenTelemetry SDK does not break for us. Also set while a stream bridge writes through to the console
(so the console handler's output is not captured twice).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

_state = threading.local()


def active() -> bool:
    return getattr(_state, "on", False)


@contextmanager
def suppressed():
    prev = getattr(_state, "on", False)
    _state.on = True
    try:
        yield
    finally:
        _state.on = prev

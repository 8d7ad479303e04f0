"""omega-ml's task logging mode on the worker: what ``om.runtime.mode(logging=...)`` turns on for a task.

The selected Python logger gets the selected level and a LogBridge that tags its records for the log dataset;
``print`` output goes to that logger at that level; the simple logger obeys the same level. All of it is undone
when the task ends, whatever happens.
"""
from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager

from omegaml_otel._internal.capture import streams
from omegaml_otel._internal.capture.context import task_level
from omegaml_otel._internal.capture.logbridge import LogBridge
from omegaml_otel._internal.compat.levels import PYTHON_LEVELS, simple_level
from omegaml_otel._internal.compat.logger import dataset_attributes, default_logger
from omegaml_otel._internal.export.pipeline import pipeline


def _handlers_lock():
    return logging._lock  # the lock logging itself takes around handler list changes


_LEVEL_WORDS = {"info", "warn", "warning", "fatal", "error", "debug", "critical"}


def resolve(spec) -> tuple[str, str] | None:
    """``__logging`` value -> (logger name, LEVEL), or None when logging is off.

    True -> ('root', 'INFO'); a level word -> ('root', LEVEL); another string -> (that logger, 'INFO');
    (name, level) -> as given, name True meaning root. Unlike omega-ml, 'warning' is a level, not a logger name.
    """
    if spec is True:
        return "root", "INFO"
    if spec is None or spec is False:
        return None
    if isinstance(spec, str):
        return ("root", spec.upper()) if spec.lower() in _LEVEL_WORDS else (spec, "INFO")
    if isinstance(spec, (list, tuple)) and len(spec) == 2:
        name, level = spec
        name = "root" if name is True else name
        if not isinstance(name, str) or not isinstance(level, str) or level.upper() not in PYTHON_LEVELS:
            raise ValueError(f"logging={spec!r}: give (logger name, level) with level one of DEBUG, INFO, "
                             "WARNING, ERROR, CRITICAL")
        return name, level.upper()
    raise ValueError(f"logging={spec!r} is not understood; use True, False, a logger name, a level, or "
                     "(logger name, level)")


@contextmanager
def task_logging(spec):
    resolved = resolve(spec)
    if resolved is None:
        yield
        return
    name, level = resolved
    levelno = PYTHON_LEVELS[level]
    pylogger = logging.getLogger(None if name == "root" else name)
    previous = pylogger.level
    pylogger.setLevel(levelno)
    provider = pipeline().logger_provider
    handler = LogBridge(logger_provider=provider, attributes=dataset_attributes(), claim=True)
    # first in line, so that it claims the record before a general bridge on the same logger stores it again
    with _handlers_lock():
        pylogger.handlers.insert(0, handler)
    default_logger().dataset.ensure()
    # the simple logger obeys the same level; NOTSET (everything) is its DEBUG
    level_token = task_level.set(simple_level("DEBUG" if level == "NOTSET" else level))
    redirect_token = streams.redirect.set((pylogger, levelno))
    try:
        with streams.installed(provider):
            try:
                yield
            except Exception as exc:
                if pylogger.isEnabledFor(logging.ERROR):
                    tb = traceback.format_exc() if pylogger.isEnabledFor(logging.DEBUG) else ""
                    pylogger.error(f"{exc}\n{tb}")
                raise
            finally:
                streams.flush_partial()
    finally:
        streams.redirect.reset(redirect_token)
        task_level.reset(level_token)
        pylogger.removeHandler(handler)
        pylogger.setLevel(previous)

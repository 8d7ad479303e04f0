"""omega-ml's task logging mode on the worker: what ``om.runtime.mode(logging=...)`` turns on for a task.

The selected Python logger, at the selected level, has its records tagged for the log dataset; ``print`` output goes
to that logger at that level; the simple logger obeys the same level. All of it is undone when the task ends,
whatever happens.

omega-ml sets the logger's level and adds a handler, for the whole process. That is right for a prefork child, which
runs one task at a time, but with ``--pool threads`` (or gevent) tasks run side by side in one process, and one
task's mode would change what every other task emits. So the mode is kept per task, in a ContextVar
(``streams.redirect``, which also routes ``print``), and nothing process-wide is changed while a task runs:

- the level: ``Logger.isEnabledFor`` and ``getEffectiveLevel`` are replaced, once, by versions that see the running
  task's mode: the selected logger has the selected level *for that task only*. Outside a task logging mode they
  are the stock methods plus one ContextVar read;
- the dataset tag: one ``_ModeHandler`` per selected logger, attached while at least one running task selected that
  logger, bridges (and claims) only the records of the tasks that selected it.
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


# -- the level of the selected logger, per task ---------------------------------------------------------------------
_stock_effective_level = logging.Logger.getEffectiveLevel
_stock_is_enabled_for = logging.Logger.isEnabledFor


def _effective_level(self: logging.Logger) -> int:
    """``Logger.getEffectiveLevel`` as if the running task's selected logger had the task's level."""
    mode = streams.redirect.get()
    if mode is None:
        return _stock_effective_level(self)
    selected, level = mode
    logger = self
    while logger is not None:
        if logger is selected:
            if level:  # NOTSET: the selected logger inherits, as after setLevel(NOTSET)
                return level
        elif logger.level:
            return logger.level
        logger = logger.parent
    return logging.NOTSET


def _is_enabled_for(self: logging.Logger, level: int) -> bool:
    """``Logger.isEnabledFor`` under the running task's mode; the stock method (and its cache) outside one."""
    if streams.redirect.get() is None:
        return _stock_is_enabled_for(self, level)
    if self.disabled or self.manager.disable >= level:
        return False
    return level >= self.getEffectiveLevel()


def _levels_per_task() -> None:
    """Install the per-task level methods (idempotent; under logging's own lock, which guards its loggers)."""
    if logging.Logger.isEnabledFor is _is_enabled_for:
        return
    with logging._lock:
        logging.Logger.getEffectiveLevel = _effective_level
        logging.Logger.isEnabledFor = _is_enabled_for


# -- the dataset tag of the selected logger, per task ---------------------------------------------------------------
class _ModeHandler(LogBridge):
    """Tags for the log dataset, and claims, the records of the tasks whose mode selected ``selected``; lets every
    other record pass untouched (to the general bridge on the root logger, without the dataset tag)."""

    def __init__(self, selected: logging.Logger):
        super().__init__(logger_provider=pipeline().logger_provider, attributes=dataset_attributes(), claim=True)
        self.selected = selected
        self.tasks = 0

    def handle(self, record: logging.LogRecord) -> bool:
        mode = streams.redirect.get()
        if mode is None or mode[0] is not self.selected:
            return False
        return super().handle(record)


def _attach(selected: logging.Logger) -> _ModeHandler:
    with logging._lock:  # the lock logging itself takes around handler list changes
        handler = next((h for h in selected.handlers if isinstance(h, _ModeHandler)), None)
        if handler is None:
            handler = _ModeHandler(selected)
            # first in line, so that it claims the record before a general bridge on the same logger stores it again
            selected.handlers.insert(0, handler)
        handler.tasks += 1
    return handler


def _detach(handler: _ModeHandler) -> None:
    with logging._lock:
        handler.tasks -= 1
        if handler.tasks == 0:
            handler.selected.removeHandler(handler)


@contextmanager
def task_logging(spec):
    resolved = resolve(spec)
    if resolved is None:
        yield
        return
    name, level = resolved
    levelno = PYTHON_LEVELS[level]
    pylogger = logging.getLogger(None if name == "root" else name)
    _levels_per_task()
    provider = pipeline().logger_provider
    handler = _attach(pylogger)
    default_logger().dataset.ensure()
    # the simple logger obeys the same level; NOTSET (everything) is its DEBUG
    level_token = task_level.set(simple_level("DEBUG" if level == "NOTSET" else level))
    mode_token = streams.redirect.set((pylogger, levelno))
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
        streams.redirect.reset(mode_token)
        task_level.reset(level_token)
        _detach(handler)

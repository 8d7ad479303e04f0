"""Per-task context of the write path: what every record emitted in the current task carries, the simple logger's
level under a task logging mode, and the last task this process sent.

ContextVars rather than globals so that thread and asyncio pools keep their tasks apart.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from omegaml_otel._internal.export.pipeline import pipeline
from omegaml_otel.conventions import TASK_ID

#: attributes of every log record emitted in the current task (task id and name, job name, notebook cell)
record_attributes: ContextVar[dict[str, Any]] = ContextVar("omtel_record_attributes", default={})
#: simple-logger level in force inside a task run with a logging mode (omega-ml sets it per request)
task_level: ContextVar[str | None] = ContextVar("omtel_task_level", default=None)
_last_sent: str | None = None


def in_task() -> bool:
    return TASK_ID in record_attributes.get()


def flush_outside_task() -> None:
    """Outside a task, make a record readable by other processes at once, as omega-ml's direct insert did. Inside
    one, the task's records are flushed before its result is published."""
    if not in_task():
        pipeline().flush_logs()


def remember_sent(task_id: str) -> None:
    """Note the id of a task this process sent (readers can then wait for its records)."""
    global _last_sent
    _last_sent = task_id


def last_sent() -> str | None:
    return _last_sent

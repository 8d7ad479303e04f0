"""Attributes that every log record emitted in the current task carries (task id and name).

A ContextVar rather than a global so that thread and asyncio pools keep their tasks apart.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any

record_attributes: ContextVar[dict[str, Any]] = ContextVar("omtel_record_attributes", default={})

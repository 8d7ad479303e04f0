"""omega-ml's simple-logger levels: their numbers run the other way from Python's (INFO 4, DEBUG 5)."""
from __future__ import annotations

import logging

from opentelemetry._logs import SeverityNumber

SIMPLE_LEVELS = ["QUIET", "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
SIMPLE_SEVERITY = {"QUIET": SeverityNumber.UNSPECIFIED, "CRITICAL": SeverityNumber.FATAL,
                   "ERROR": SeverityNumber.ERROR, "WARNING": SeverityNumber.WARN, "INFO": SeverityNumber.INFO,
                   "DEBUG": SeverityNumber.DEBUG, "SYSTEM": SeverityNumber.INFO}
PYTHON_LEVELS = {"CRITICAL": 50, "FATAL": 50, "ERROR": 40, "WARNING": 30, "WARN": 30, "INFO": 20, "DEBUG": 10,
                 "NOTSET": 0}


def simple_level(level: str) -> str:
    """The canonical simple-logger level name; a clear error for anything else."""
    if not isinstance(level, str):
        raise ValueError(f"log level must be a name such as 'INFO', not {level!r}; levels are "
                         f"{', '.join(SIMPLE_LEVELS)}")
    name = _ALIASES.get(level.upper(), level.upper())
    if name not in SIMPLE_LEVELS:
        raise ValueError(f"unknown log level {level!r}; levels are {', '.join(SIMPLE_LEVELS)}")
    return name


def python_level(level: str | int) -> int:
    """A Python logging level number from a name or number; a clear error for unknown names."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if isinstance(number, int):
            return number
    raise ValueError(f"unknown log level {level!r}; use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")

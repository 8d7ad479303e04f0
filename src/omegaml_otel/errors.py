"""The errors this package raises on purpose, all under one base class.

``except om.OmtelError`` catches anything omegaml-otel raised to tell the caller what to change. Each class also
derives from the builtin a caller would have caught before (``ValueError``, ``RuntimeError``, ``TimeoutError``),
so existing handlers keep working.
"""
from __future__ import annotations

__all__ = ["OmtelError", "ConfigurationError", "StoreError", "ExportFailed", "NoWorkerError", "JobError",
           "ArtifactError"]


class OmtelError(Exception):
    """Base of every error omegaml-otel raises; the message names what went wrong and the fix."""


class ConfigurationError(OmtelError, ValueError):
    """A setting has a value this package cannot use; the message names the setting and the fix."""


class StoreError(OmtelError, RuntimeError):
    """The store cannot be opened, read or written; the message says which store and what to change."""


class ExportFailed(OmtelError, RuntimeError):
    """An exporter reported a failure; the export buffer keeps the batch for a retry."""


class NoWorkerError(OmtelError, TimeoutError):
    """No worker took the task within the timeout."""


class JobError(OmtelError, RuntimeError):
    """A job raised: the message names the job, the notebook cell (if any) and the error with its traceback."""


class ArtifactError(OmtelError, ValueError):
    """An artifact is refused rather than unpickled: unsigned, altered, missing, or carried inline by a telemetry
    record (which anyone who can write a record could have planted); the message says what to do instead."""

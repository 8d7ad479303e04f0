"""omegaml-otel: omega-ml's task logging and profiling, rebuilt on OpenTelemetry.

Use as ``import omegaml_otel as om``; ``om.runtime``, ``om.logger``, ``om.jobs`` and ``om.telemetry`` are created
on first access, so importing this package configures nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from omegaml_otel import telemetry as telemetry
    from omegaml_otel.compat.logger import SimpleLogger
    from omegaml_otel.runtimes.client import Runtime
    from omegaml_otel.runtimes.jobs import JobStore

    runtime: Runtime
    logger: SimpleLogger
    jobs: JobStore

_singletons: dict[str, Any] = {}


def setup(role: str | None = None):
    """Set up this process's tracer, logger and meter providers now (otherwise done on first use of
    ``om.runtime``/``om.logger``), e.g. before recording metrics with the OpenTelemetry API."""
    from omegaml_otel.export.providers import telemetry

    return telemetry(role)


def __getattr__(name: str) -> Any:
    if name == "runtime":
        if name not in _singletons:
            from omegaml_otel.runtimes.client import Runtime
            _singletons[name] = Runtime()
        return _singletons[name]
    if name == "logger":
        if name not in _singletons:
            from omegaml_otel.compat.logger import SimpleLogger
            _singletons[name] = SimpleLogger()
        return _singletons[name]
    if name == "jobs":
        if name not in _singletons:
            from omegaml_otel.runtimes.jobs import JobStore
            _singletons[name] = JobStore()
        return _singletons[name]
    if name == "telemetry":
        import importlib
        return importlib.import_module("omegaml_otel.telemetry")
    raise AttributeError(f"module 'omegaml_otel' has no attribute {name!r}")

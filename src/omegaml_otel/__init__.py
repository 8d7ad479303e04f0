"""omegaml-otel: omega-ml's task logging and profiling, rebuilt on OpenTelemetry.

Use as ``import omegaml_otel as om``. The names below are the public surface; everything under
``omegaml_otel._internal`` may change without notice. ``om.runtime``, ``om.logger`` and ``om.jobs`` are created on
first access, so importing this package configures nothing and stays cheap.

Public modules: ``omegaml_otel.settings`` (configuration), ``omegaml_otel.errors``, ``omegaml_otel.conventions``
(attribute keys and event names as stored), ``omegaml_otel.telemetry`` (the native reader),
``omegaml_otel.instrumentation`` (the instrumentors), ``omegaml_otel.tasks`` (the task base class),
``omegaml_otel.worker`` (running workers) and ``omegaml_otel.cli`` (``omtel``).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what editors and type checkers see of the names resolved on first access
    from omegaml_otel import conventions as conventions
    from omegaml_otel import errors as errors
    from omegaml_otel import settings as settings
    from omegaml_otel import telemetry as telemetry
    from omegaml_otel._internal.compat.experiment import NoTrackTracker as NoTrackTracker
    from omegaml_otel._internal.compat.experiment import OmegaProfilingTracker as OmegaProfilingTracker
    from omegaml_otel._internal.compat.experiment import OmegaSimpleTracker as OmegaSimpleTracker
    from omegaml_otel._internal.compat.logger import SimpleLogger
    from omegaml_otel._internal.export.pipeline import pipeline as setup  # noqa: F401
    from omegaml_otel._internal.runtimes.client import Runtime
    from omegaml_otel._internal.runtimes.jobs import JobStore
    from omegaml_otel._internal.stores import Store as Store
    from omegaml_otel._internal.stores import open_store as open_store
    from omegaml_otel.errors import ArtifactError as ArtifactError
    from omegaml_otel.errors import ConfigurationError as ConfigurationError
    from omegaml_otel.errors import ExportFailed as ExportFailed
    from omegaml_otel.errors import JobError as JobError
    from omegaml_otel.errors import NoWorkerError as NoWorkerError
    from omegaml_otel.errors import OmtelError as OmtelError
    from omegaml_otel.errors import StoreError as StoreError

    runtime: Runtime
    logger: SimpleLogger
    jobs: JobStore

#: public name -> (module, attribute): the attribute, or the module itself when None, or the value a factory
#: returns (the process's one runtime, logger and job store) when the attribute ends in "()"
_PUBLIC: dict[str, tuple[str, str | None]] = {
    "runtime": ("omegaml_otel._internal.runtimes.client", "default_runtime()"),
    "logger": ("omegaml_otel._internal.compat.logger", "default_logger()"),
    "jobs": ("omegaml_otel._internal.runtimes.jobs", "default_jobs()"),
    "setup": ("omegaml_otel._internal.export.pipeline", "pipeline"),
    "open_store": ("omegaml_otel._internal.stores", "open_store"),
    "Store": ("omegaml_otel._internal.stores", "Store"),
    "telemetry": ("omegaml_otel.telemetry", None),
    "settings": ("omegaml_otel.settings", None),
    "conventions": ("omegaml_otel.conventions", None),
    "errors": ("omegaml_otel.errors", None),
    "OmtelError": ("omegaml_otel.errors", "OmtelError"),
    "ConfigurationError": ("omegaml_otel.errors", "ConfigurationError"),
    "StoreError": ("omegaml_otel.errors", "StoreError"),
    "NoWorkerError": ("omegaml_otel.errors", "NoWorkerError"),
    "JobError": ("omegaml_otel.errors", "JobError"),
    "ExportFailed": ("omegaml_otel.errors", "ExportFailed"),
    "ArtifactError": ("omegaml_otel.errors", "ArtifactError"),
    # omega-ml's tracker classes: what om.runtime.experiment() returns is an instance of one of them
    "OmegaSimpleTracker": ("omegaml_otel._internal.compat.experiment", "OmegaSimpleTracker"),
    "OmegaProfilingTracker": ("omegaml_otel._internal.compat.experiment", "OmegaProfilingTracker"),
    "NoTrackTracker": ("omegaml_otel._internal.compat.experiment", "NoTrackTracker"),
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'omegaml_otel' has no attribute {name!r}; public names are "
                             f"{', '.join(__all__)}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute.removesuffix("()"))
        if attribute.endswith("()"):
            value = value()
    return value


def __dir__() -> list[str]:
    """Tab completion on ``om.`` shows the public names, not this module's own imports."""
    return list(__all__)

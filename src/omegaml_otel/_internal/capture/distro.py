"""The package's own OpenTelemetry distro and configurator, so that ``opentelemetry-instrument`` gives the same
result whichever other distros are installed.

``opentelemetry-instrument`` runs one distro, then one configurator, then every instrumentor. When
``OTEL_PYTHON_DISTRO`` and ``OTEL_PYTHON_CONFIGURATOR`` are unset it takes the *first* entry point of each group,
and that order follows ``os.listdir`` of site-packages, which differs between machines. With
``opentelemetry-distro`` installed (what OpenTelemetry's getting-started pages install), its distro sets
``OTEL_*_EXPORTER=otlp`` and gRPC; its configurator then builds the SDK's batch processors (which drop records
beyond 2,048 in a burst) or fails outright when only the HTTP exporter is installed, and no instrumentor loads.

The choice is therefore made before either runs:

- ``launcher.py`` is what ``opentelemetry-instrument`` imports as an ``opentelemetry_environment_variables`` entry
  point, in the launcher process before it starts the program: it sets ``OTEL_PYTHON_DISTRO=omegaml_otel`` when
  unset. It is the only hook that runs before the distro is picked (``--distro`` and an explicit
  ``OTEL_PYTHON_DISTRO`` still win).
- ``Distro`` sets the package's defaults (``OTEL_*_EXPORTER=omtel``, ``OTEL_PYTHON_CONFIGURATOR=omegaml_otel``)
  where unset, as vendor distros do.
- ``Configurator`` builds the package's pipeline (its own batching, no loss towards the store). When another distro
  was picked, it runs that distro's own configurator instead, so a selected distro keeps its providers whichever
  configurator comes first; the instrumentors then adopt them.
- ``check_distro`` (an ``opentelemetry_pre_instrument`` entry point) says loudly when another distro was picked by
  chance (no launcher, e.g. ``sitecustomize`` on ``PYTHONPATH``, and ``OTEL_PYTHON_DISTRO`` unset), naming the fix.
"""
from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator

from omegaml_otel._internal.export.pipeline import pipeline
from omegaml_otel.conventions import DISTRO as NAME
from omegaml_otel.settings import STORE_EXPORTER, settings

__all__ = ["Configurator", "Distro", "check_distro", "NAME"]

#: the package's instrumentors (opentelemetry_instrumentor entry points), turned off by OTEL_SDK_DISABLED
INSTRUMENTORS = ("omegaml_otel_celery", "omegaml_otel_logging", "omegaml_otel_stdout")
_DISTRO = "OTEL_PYTHON_DISTRO"
_CONFIGURATOR = "OTEL_PYTHON_CONFIGURATOR"
#: set once this process's distro is ours
_configured_by_us = False
#: the warning of check_distro was given
_told = False


def _say(message: str) -> None:
    sys.__stderr__.write(f"omegaml-otel: {message}\n")


class Distro(BaseDistro):
    """``OTEL_PYTHON_DISTRO=omegaml_otel``: every signal into the package's store unless the settings say otherwise,
    through the package's configurator."""

    def _configure(self, **kwargs) -> None:
        global _configured_by_us
        _configured_by_us = True
        for signal in ("TRACES", "LOGS", "METRICS"):
            os.environ.setdefault(f"OTEL_{signal}_EXPORTER", STORE_EXPORTER)
        os.environ.setdefault(_CONFIGURATOR, NAME)

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs) -> None:
        """OTEL_SDK_DISABLED=true: the package's instrumentors are not installed at all."""
        if entry_point.name in INSTRUMENTORS and settings().sdk_disabled:
            return
        super().load_instrumentor(entry_point, **kwargs)


class Configurator(_BaseConfigurator):
    """``OTEL_PYTHON_CONFIGURATOR=omegaml_otel``: the package's pipeline, built now so that every instrumentor
    (contrib's too) gets its providers; or, when another distro was picked, that distro's own configurator."""

    def _configure(self, **kwargs) -> None:
        if not _configured_by_us:
            check_distro()
            picked = _picked_distro()
            delegate = _configurator_of(picked) if picked and picked != NAME else None
            if delegate is not None:
                delegate.load()().configure(**kwargs)
                return
        if not settings().sdk_disabled:
            pipeline()


def check_distro() -> None:
    """Say when opentelemetry-instrument picked another distro by chance: records then go where it sends them."""
    global _told
    try:
        if _told or _configured_by_us or settings().python_distro:
            return
        picked = _picked_distro()
    except Exception:  # a warning must never keep the program from starting (bad settings are said elsewhere)
        return
    if picked and picked != NAME:
        _told = True
        _say(f"opentelemetry-instrument picked the distro {picked!r}, not omegaml-otel's, because several are "
             f"installed and {_DISTRO} is unset (it was not started through the opentelemetry-instrument command). "
             f"Records go where {picked!r} sends them. Set {_DISTRO}={NAME} to store them with omegaml-otel, or "
             f"{_DISTRO}={picked} to keep {picked!r} and silence this message.")


def _picked_distro() -> str | None:
    """The distro opentelemetry-instrument ran: the one named, else the first entry point (its own rule)."""
    named = settings().python_distro
    if named:
        return named
    first = next(iter(entry_points(group="opentelemetry_distro")), None)
    return first.name if first is not None else None


def _configurator_of(distro: str) -> EntryPoint | None:
    """The configurator shipped by the same package as the distro entry point ``distro`` (None: it ships none)."""
    for ep in entry_points(group="opentelemetry_distro"):
        if ep.name == distro and ep.dist is not None:
            own = [c for c in ep.dist.entry_points if c.group == "opentelemetry_configurator"]
            return own[0] if len(own) == 1 else None
    return None

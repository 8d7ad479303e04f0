"""The instrumentors, for ``opentelemetry-instrument`` (entry points) and for Celery apps that set up
OpenTelemetry themselves.

Each one takes the providers as contrib's instrumentors do (``tracer_provider``, ``logger_provider``,
``meter_provider``) and uses the package's own pipeline for any not given::

    CeleryInstrumentor().instrument(tracer_provider=tp, logger_provider=lp, meter_provider=mp)
    LogBridgeInstrumentor().instrument(logger_provider=lp)
    StreamInstrumentor().instrument(logger_provider=lp)

``Distro`` and ``Configurator`` are the package's ``opentelemetry_distro`` and ``opentelemetry_configurator`` entry
points (``omegaml_otel``): ``opentelemetry-instrument`` stores everything with omegaml-otel's own batching whether
or not ``opentelemetry-distro`` is installed.
"""
from __future__ import annotations

from omegaml_otel._internal.capture.celery import CeleryInstrumentor
from omegaml_otel._internal.capture.distro import Configurator, Distro
from omegaml_otel._internal.capture.logbridge import LogBridge, LogBridgeInstrumentor
from omegaml_otel._internal.capture.profiling import ProfileSampler
from omegaml_otel._internal.capture.streams import StreamBridge, StreamInstrumentor

__all__ = ["CeleryInstrumentor", "Configurator", "Distro", "LogBridge", "LogBridgeInstrumentor", "ProfileSampler",
           "StreamBridge", "StreamInstrumentor"]

"""Per-process tracer, logger and meter providers, exporting where the settings say.

``telemetry()`` is idempotent per process. When another party (``opentelemetry-distro``, the user's own code) has
already installed SDK providers, they are used as they are and only our capture is added to them. Forked children
keep the providers (SDK 1.45 is fork-aware) and our buffers reset themselves at fork.
"""
from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from omegaml_otel.export.buffer import (
    BufferedLogProcessor,
    BufferedMetricExporter,
    BufferedSpanProcessor,
    ExportBuffer,
)
from omegaml_otel.export.store import StoreMetricExporter, StoreWriter
from omegaml_otel.settings import STORE_EXPORTER, ConfigurationError, Settings, settings

_OTLP = ("otlp", "otlp_proto_http")
_OTLP_EXPORTERS = {
    "traces": ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    "logs": ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
    "metrics": ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
}
_CONSOLE_EXPORTERS = {"traces": ConsoleSpanExporter, "logs": ConsoleLogRecordExporter,
                      "metrics": ConsoleMetricExporter}


class ExportFailed(RuntimeError):
    pass


def _checked(exporter, one_item: bool = False):
    """Export through an SDK exporter; a FAILURE result raises, so the buffer keeps the batch for a retry.
    ``one_item``: the batch holds one item that is the exporter's argument (a metric collection)."""
    def export(batch):
        result = exporter.export(batch[0] if one_item else batch)
        if getattr(result, "name", "SUCCESS") != "SUCCESS":
            raise ExportFailed(f"{type(exporter).__name__} reported {result.name}")
    return export


def _sending(buffers: dict[str, ExportBuffer], signal: str, name: str, cfg: Settings,
             interval: float) -> ExportBuffer:
    """The process's one buffer towards a collector (or the console) for a signal: batches on the SDK's schedule,
    never blocks a task, counts what it drops."""
    key = f"{signal} to {name}"
    if key not in buffers:
        one = signal == "metrics"  # a metric collection is exported alone: a retry then sends no duplicates
        buffers[key] = ExportBuffer(_checked(_exporter(signal, name, cfg), one_item=one), name=key,
                                    interval=interval, max_batch=1 if one else 4096, max_queue=cfg.max_queue,
                                    block=False)
    return buffers[key]


def _exporter(signal: str, name: str, cfg: Settings):
    """An OTLP/HTTP or console exporter; OTLP exporters read their OTEL_EXPORTER_OTLP_* settings themselves."""
    if name in _OTLP:
        protocol = cfg.otlp_protocols.get(signal, "http/protobuf")
        if protocol != "http/protobuf":
            raise ConfigurationError(
                f"OTLP protocol {protocol!r} for {signal} is not supported by omegaml-otel (gRPC exporters are not "
                "fork-safe under Celery prefork); set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
        module, cls = _OTLP_EXPORTERS[signal]
        return getattr(importlib.import_module(module), cls)()
    return _CONSOLE_EXPORTERS[signal]()


@dataclass
class Telemetry:
    tracer_provider: trace.TracerProvider
    logger_provider: _logs.LoggerProvider
    meter_provider: metrics.MeterProvider
    buffers: dict[str, ExportBuffer] = field(default_factory=dict)
    owned: bool = True
    writer: StoreWriter | None = None
    emitter: Any = None  # LogEmitter, made by export.emitter on first use

    @property
    def resource(self) -> Resource:
        return getattr(self.tracer_provider, "resource", None) or Resource.create({})

    def metric_exporters(self) -> list:
        """Fresh exporters for the configured metric destinations (profiling samplers own their readers)."""
        cfg = settings()
        if self.writer is None:
            self.writer = StoreWriter(cfg.store_url)
        return [StoreMetricExporter(self.writer) if name == STORE_EXPORTER
                else BufferedMetricExporter(_sending(self.buffers, "metrics", name, cfg, cfg.flush_interval))
                for name in cfg.exporters["metrics"]]

    def flush_logs(self) -> None:
        """Make every log record emitted so far readable in the embedded store (called before a task result is
        sent). OTLP exporters are left to their batch schedule: a slow or absent collector must not hold up a
        task, so the collector path has a read-after-write delay instead."""
        buffer = self.buffers.get("logs")
        if buffer is not None:
            buffer.flush()
        elif not self.owned and settings().exporters["logs"] == (STORE_EXPORTER,):
            # a distro built the providers around our StoreLogExporter: its batch processor flushes locally
            self.logger_provider.force_flush()

    def flush(self) -> None:
        for provider in (self.logger_provider, self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush()

    def shutdown(self) -> None:
        self.flush()
        for buffer in self.buffers.values():
            buffer.shutdown()


_telemetry: Telemetry | None = None
_lock = threading.Lock()


def resource(cfg: Settings, role: str) -> Resource:
    return Resource.create({
        "service.name": cfg.service_name or f"omegaml-{role}",
        "host.name": cfg.hostname,
        "omegaml.user": cfg.userid,
        "process.pid": os.getpid(),
    })


def default_role() -> str:
    """'worker' in a Celery worker process, else 'client': the default service name is omegaml-<role>."""
    return "worker" if "worker" in sys.argv else "client"


def telemetry(role: str | None = None) -> Telemetry:
    """The process's providers, created on first use (``role`` names the service when OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES do not)."""
    global _telemetry
    if _telemetry is not None:
        return _telemetry
    with _lock:
        if _telemetry is None:
            _telemetry = _build(settings(), role or default_role())
            # the SDK providers shut their processors down at exit, but no provider owns the profiling samplers'
            # collector buffer: this exports (or reports) what it still holds
            atexit.register(_telemetry.shutdown)
    return _telemetry


def current() -> Telemetry | None:
    return _telemetry


def _is_sdk(provider) -> bool:
    return isinstance(provider, (TracerProvider, LoggerProvider, MeterProvider))


def _build(cfg: Settings, role: str) -> Telemetry:
    existing = (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider())
    if all(_is_sdk(p) for p in existing):
        return Telemetry(*existing, owned=False)
    res = resource(cfg, role)
    writer = StoreWriter(cfg.store_url)
    buffers: dict[str, ExportBuffer] = {}

    def buffer(name, export):
        b = buffers[name] = ExportBuffer(export, name=name, interval=cfg.flush_interval, max_queue=cfg.max_queue)
        return b

    tp = existing[0] if _is_sdk(existing[0]) else TracerProvider(resource=res)
    if tp is not existing[0]:
        for name in cfg.exporters["traces"]:
            tp.add_span_processor(BufferedSpanProcessor(
                buffer("spans", writer.spans) if name == STORE_EXPORTER
                else _sending(buffers, "traces", name, cfg, cfg.otlp_spans_delay)))
        trace.set_tracer_provider(tp)

    lp = existing[1] if _is_sdk(existing[1]) else LoggerProvider(resource=res)
    if lp is not existing[1]:
        for name in cfg.exporters["logs"]:
            lp.add_log_record_processor(BufferedLogProcessor(
                buffer("logs", writer.logs) if name == STORE_EXPORTER
                else _sending(buffers, "logs", name, cfg, cfg.otlp_logs_delay)))
        _logs.set_logger_provider(lp)

    mp = existing[2]
    if not _is_sdk(mp):
        readers = [PeriodicExportingMetricReader(StoreMetricExporter(writer) if name == STORE_EXPORTER
                                                 else _exporter("metrics", name, cfg))
                   for name in cfg.exporters["metrics"]]
        mp = MeterProvider(resource=res, metric_readers=readers)
        metrics.set_meter_provider(mp)
    return Telemetry(tp, lp, mp, buffers, writer=writer)

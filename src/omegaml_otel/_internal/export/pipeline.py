"""The pipeline: this process's tracer, logger and meter providers, exporting where the settings say.

``pipeline()`` is idempotent per process. When another party (``opentelemetry-distro``, the user's own code) has
already installed SDK providers, they are used as they are and only our capture is added to them. Forked children
keep the providers (SDK 1.45 is fork-aware), our buffers reset themselves at fork, and our resource takes the
child's own ``process.pid``, ``process.parent_pid`` and ``service.instance.id`` (``ProcessResource``).
With ``OTEL_SDK_DISABLED=true`` the pipeline is the API's no-op providers: nothing is captured or exported.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field

from opentelemetry import _logs, metrics, trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from omegaml_otel._internal import deadline
from omegaml_otel._internal.export.buffer import (
    BufferedLogProcessor,
    BufferedMetricExporter,
    BufferedSpanProcessor,
    ExportBuffer,
)
from omegaml_otel._internal.export.emitter import LogEmitter
from omegaml_otel._internal.export.scrub import scrubbing
from omegaml_otel._internal.export.store import StoreMetricExporter, StoreWriter
from omegaml_otel.conventions import HOST_NAME, INSTANCE_ID, PROCESS_PARENT_PID, PROCESS_PID, SERVICE_NAME, USER
from omegaml_otel.errors import ExportFailed
from omegaml_otel.settings import STORE_EXPORTER, Batching, Settings, settings

_OTLP = ("otlp", "otlp_proto_http")
_CONSOLE_EXPORTERS = {"traces": ConsoleSpanExporter, "logs": ConsoleLogRecordExporter,
                      "metrics": ConsoleMetricExporter}


def _checked(exporter, session=None, one_item: bool = False):
    """Export through an SDK exporter; a FAILURE result raises, so the buffer keeps the batch for a retry.
    ``session``: the OTLP exporter's, which knows why the request failed (the SDK's result does not say).
    ``one_item``: the batch holds one item that is the exporter's argument (a metric collection)."""
    def export(batch):
        result = exporter.export(batch[0] if one_item else batch)
        if getattr(result, "name", "SUCCESS") != "SUCCESS":
            why = getattr(session, "last_error", None)
            raise ExportFailed(str(why) if why else f"{type(exporter).__name__} reported {result.name}")
    return export


def _sending(buffers: dict[str, ExportBuffer], signal: str, name: str, cfg: Settings,
             interval: float) -> ExportBuffer:
    """The process's one buffer towards a collector (or the console) for a signal: batches on the SDK's schedule,
    never blocks a task, counts what it drops."""
    key = f"{signal} to {name}"
    if key not in buffers:
        one = signal == "metrics"  # a metric collection is exported alone: a retry then sends no duplicates
        batching = _batching(cfg, signal)
        buffers[key] = ExportBuffer(_checked(*_exporter(signal, name, cfg), one_item=one), name=key,
                                    interval=interval, max_batch=1 if one else batching.max_batch,
                                    max_queue=batching.max_queue, block=False, export_timeout=batching.export_timeout,
                                    **_bounds(cfg))
    return buffers[key]


def _batching(cfg: Settings, signal: str) -> Batching:
    """The signal's OTEL_BLRP_*/OTEL_BSP_* settings; metrics have none (their reader is their schedule)."""
    return cfg.batching.get(signal) or Batching(max_queue=cfg.max_queue)


#: seconds between exports to a collector when OTEL_BLRP_SCHEDULE_DELAY / OTEL_BSP_SCHEDULE_DELAY are unset (the SDK's)
_COLLECTOR_DELAY = 5.0


def _bounds(cfg: Settings) -> dict:
    """How an export buffer retries a failing destination and how long its callers and the exit wait for it."""
    return {"retry": cfg.retry_interval, "wait": cfg.flush_timeout, "exit_wait": cfg.exit_timeout}


def _exporter(signal: str, name: str, cfg: Settings) -> tuple:
    """An OTLP (over OTEL_EXPORTER_OTLP_PROTOCOL; ``otlp_proto_http`` always HTTP) or console exporter, and what
    keeps why the OTLP exporter's last export failed (None for the console). OTLP exporters read
    OTEL_EXPORTER_OTLP_* themselves."""
    if name in _OTLP:
        # requests, grpcio over gRPC, and the OTLP exporters are imported only by a process that sends to a collector
        from omegaml_otel._internal.export import otlp
        protocol = "http/protobuf" if name == "otlp_proto_http" else cfg.otlp_protocols.get(signal, "http/protobuf")
        return otlp.exporter(signal, protocol)
    return _CONSOLE_EXPORTERS[signal](), None


@dataclass
class Pipeline:
    tracer_provider: trace.TracerProvider
    logger_provider: _logs.LoggerProvider
    meter_provider: metrics.MeterProvider
    buffers: dict[str, ExportBuffer] = field(default_factory=dict)
    owned: bool = True
    writer: StoreWriter | None = None
    _emitter: LogEmitter | None = None

    @property
    def emitter(self) -> LogEmitter:
        """The emitter for this pipeline's logger provider: straight into the store's no-loss buffer when the
        store is the only log destination and the providers are ours, else through the SDK logger."""
        if self._emitter is None:
            cfg = settings()
            fast = self.owned and cfg.store_only("logs")
            self._emitter = LogEmitter(self.logger_provider, self.buffers.get("logs") if fast else None,
                                       limits=log_limits(cfg))
        return self._emitter

    @property
    def resource(self) -> Resource:
        return getattr(self.tracer_provider, "resource", None) or Resource.create({})

    def metric_exporters(self) -> list:
        """Fresh exporters for the configured metric destinations (profiling samplers own their readers)."""
        cfg = settings()
        if cfg.sdk_disabled:
            return []
        if self.writer is None:
            self.writer = StoreWriter(cfg.store_url)
        return [StoreMetricExporter(self.writer) if name == STORE_EXPORTER
                else BufferedMetricExporter(_sending(self.buffers, "metrics", name, cfg, cfg.flush_interval))
                for name in cfg.exporters["metrics"]]

    def flush_logs(self) -> None:
        """Make every log record emitted so far readable in the embedded store (called before a task result is
        sent). OTLP exporters are left to their batch schedule: a slow or absent collector must not hold up a
        task, so the collector path has a read-after-write delay instead. A store that is locked or failing
        costs the caller at most OMTEL_FLUSH_TIMEOUT once, then nothing until it takes writes again."""
        buffer = self.buffers.get("logs")
        cfg = settings()
        if buffer is not None:
            buffer.force_flush()  # the store's buffer: a caller's flush, bounded by its OMTEL_FLUSH_TIMEOUT
        elif not self.owned and cfg.store_only("logs"):
            # a distro built the providers around our StoreLogExporter: its batch processor writes in this thread,
            # where the bound caps SQLite's busy wait
            with deadline.within(cfg.flush_timeout):
                self.logger_provider.force_flush()

    def flush_for_read(self) -> None:
        """Make everything this process emitted so far readable in the embedded store, before a read: the store
        buffers write now, and providers that only feed the store are flushed. Collector-bound exports keep
        their schedule: a slow or absent collector must hold up neither a read nor a task."""
        cfg = settings()
        for buffer in self.buffers.values():
            if buffer.block:
                buffer.force_flush()  # bounded by its OMTEL_FLUSH_TIMEOUT
        with deadline.within(cfg.flush_timeout):
            for signal, provider in (("logs", self.logger_provider), ("traces", self.tracer_provider),
                                     ("metrics", self.meter_provider)):
                # ours write spans and logs through the buffers above; a distro's run our exporters in its processors
                if cfg.store_only(signal) and (signal == "metrics" or not self.owned):
                    _force_flush(provider)

    def flush(self) -> None:
        for provider in (self.logger_provider, self.tracer_provider, self.meter_provider):
            _force_flush(provider)

    def shutdown(self) -> None:
        """Export what is pending and report what could not be, within OMTEL_EXIT_TIMEOUT (or what is left of the
        process's exit clock) whatever the store or collector does. The providers are flushed in a thread that is
        left behind when the time is up: a metric reader or a provider someone else built may wait on a collector
        with the SDK's own timeouts."""
        with deadline.within(settings().exit_timeout):
            deadline.run_within(self.flush, deadline.remaining(settings().exit_timeout))
            for buffer in self.buffers.values():
                buffer.shutdown()


def _force_flush(provider) -> None:
    flush = getattr(provider, "force_flush", None)  # the API's no-op providers have none
    if flush is not None:
        flush()


_pipeline: Pipeline | None = None
_lock = threading.Lock()
#: the os._exit that _exit_exporting replaces once a pipeline is built, and calls
_os_exit = os._exit


class ProcessResource(Resource):
    """The pipeline's resource, whose process attributes are always this process's own.

    Providers are built before Celery forks its pool, and every tracer, logger and record refers to this one
    object: at fork the child gives it its own ``process.pid``, ``process.parent_pid`` (the worker's main process)
    and a new ``service.instance.id``, so each pool child's records say which child wrote them."""

    def __init__(self, attributes, schema_url: str | None = None):
        super().__init__(attributes, schema_url)
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    @property
    def attributes(self):
        return self._process_attributes

    def _renew(self) -> None:
        self._process_attributes = BoundedAttributes(attributes={
            **self._attributes, PROCESS_PID: os.getpid(), PROCESS_PARENT_PID: os.getppid(),
            INSTANCE_ID: str(uuid.uuid4())}, immutable=True)


def resource(cfg: Settings, role: str) -> Resource:
    """This process's resource: OTEL_RESOURCE_ATTRIBUTES and the SDK's defaults, our service name, host and user,
    and the process attributes (``ProcessResource``)."""
    made = Resource.create({SERVICE_NAME: cfg.service_name or f"omegaml-{role}", HOST_NAME: cfg.hostname,
                            USER: cfg.userid})
    return ProcessResource(made.attributes, made.schema_url)


def log_limits(cfg: Settings) -> LogRecordLimits:
    """The SDK's log record limits as the settings give them: our LoggerProvider and the emitter's fast path apply
    the same ones."""
    count, length = cfg.log_attribute_count_limit, cfg.log_attribute_length_limit
    unset = LogRecordLimits.UNSET
    return LogRecordLimits(max_attributes=unset if count is None else count,
                           max_attribute_length=unset if length is None else length,
                           max_log_record_attributes=unset if count is None else count,
                           max_log_record_attribute_length=unset if length is None else length)


def default_role() -> str:
    """'worker' in a Celery worker process, else 'client': the default service name is omegaml-<role>."""
    return "worker" if "worker" in sys.argv else "client"


def pipeline(role: str | None = None) -> Pipeline:
    """The process's pipeline, built on first use (``role`` names the service when OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES do not)."""
    global _pipeline, _os_exit
    if _pipeline is not None:
        return _pipeline
    with _lock:
        if _pipeline is None:
            _pipeline = _build(settings(), role or default_role())
            # the SDK providers shut their processors down at exit, but no provider owns the profiling samplers'
            # collector buffer: this exports (or reports) what it still holds. Registered after the providers'
            # own handlers, it runs before them and starts the exit clock they then share.
            atexit.register(_exit_export)
            if os._exit is not _exit_exporting:
                _os_exit, os._exit = os._exit, _exit_exporting
    return _pipeline


def _exit_export() -> None:
    """This process is exiting: everything it still holds is exported within OMTEL_EXIT_TIMEOUT, then reported."""
    pipe = _pipeline
    if pipe is not None:
        deadline.exiting(settings().exit_timeout)
        pipe.shutdown()


def _exit_exporting(status: int) -> None:
    """``os._exit`` that first exports what this process still holds (within the exit budget). Code that leaves
    through ``os._exit`` skips atexit: a task that ends its process that way, a multiprocessing child, and every
    Celery pool child (after ``worker_process_shutdown``, which exported already: nothing is left then, and this
    costs a check of the buffers)."""
    try:
        pipe = _pipeline
        if pipe is not None and any(b.unexported() for b in pipe.buffers.values()):
            _exit_export()
    except BaseException:  # nothing may keep a process from exiting
        pass
    _os_exit(status)


def current_pipeline() -> Pipeline | None:
    """The pipeline if this process built one, without building it."""
    return _pipeline


def flush_for_read() -> None:
    """What every reader calls before it queries a store: this process's own records become readable. A process
    that built no pipeline emitted nothing, and none is built for it."""
    if _pipeline is not None:
        _pipeline.flush_for_read()


def emitter_for(logger_provider: _logs.LoggerProvider | None = None) -> LogEmitter:
    """The emitter for ``logger_provider``; the pipeline's (and its fast path) when none is given or it is the
    pipeline's own. A provider handed in by someone else never builds the pipeline."""
    if logger_provider is None:
        return pipeline().emitter
    if _pipeline is not None and logger_provider is _pipeline.logger_provider:
        return _pipeline.emitter
    return LogEmitter(logger_provider)


def _is_sdk(provider) -> bool:
    return isinstance(provider, (TracerProvider, LoggerProvider, MeterProvider))


def _build(cfg: Settings, role: str) -> Pipeline:
    if cfg.sdk_disabled:
        # OTEL_SDK_DISABLED: the API's no-op providers, no buffers and no store: every record is dropped at once
        return Pipeline(trace.NoOpTracerProvider(), _logs.NoOpLoggerProvider(), metrics.NoOpMeterProvider())
    existing = (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider())
    if all(_is_sdk(p) for p in existing):
        return Pipeline(*existing, owned=False)
    res = resource(cfg, role)
    writer = StoreWriter(cfg.store_url)
    buffers: dict[str, ExportBuffer] = {}

    def buffer(name, signal, export):
        batching = _batching(cfg, signal)
        interval = cfg.flush_interval if batching.schedule_delay is None else batching.schedule_delay
        b = buffers[name] = ExportBuffer(export, name=name, interval=interval, max_batch=batching.max_batch,
                                         max_queue=batching.max_queue, export_timeout=batching.export_timeout,
                                         **_bounds(cfg))
        return b

    # spans and log records: one buffered processor per destination, on a provider of ours unless one exists
    made = []
    for signal, current, make, processor, add, install, store_buffer, write, limits in (
            ("traces", existing[0], TracerProvider, BufferedSpanProcessor, "add_span_processor",
             trace.set_tracer_provider, "spans", writer.spans, {}),  # span limits: the SDK reads them itself
            ("logs", existing[1], LoggerProvider, BufferedLogProcessor, "add_log_record_processor",
             _logs.set_logger_provider, "logs", writer.logs, {"log_record_limits": log_limits(cfg)})):
        if _is_sdk(current):
            made.append(current)
            continue
        provider = make(resource=res, **limits)
        delay = _batching(cfg, signal).schedule_delay
        for name in cfg.exporters[signal]:
            made_processor = processor(buffer(store_buffer, signal, write) if name == STORE_EXPORTER
                                       else _sending(buffers, signal, name, cfg,
                                                     _COLLECTOR_DELAY if delay is None else delay))
            # spans are scrubbed on their way to every destination (log records: in LogEmitter.emit)
            getattr(provider, add)(scrubbing(made_processor) if signal == "traces" else made_processor)
        install(provider)
        made.append(provider)
    tp, lp = made

    mp = existing[2]
    if not _is_sdk(mp):
        readers = [PeriodicExportingMetricReader(StoreMetricExporter(writer) if name == STORE_EXPORTER
                                                 else _exporter("metrics", name, cfg)[0])
                   for name in cfg.exporters["metrics"]]
        mp = MeterProvider(resource=res, metric_readers=readers)
        metrics.set_meter_provider(mp)
    return Pipeline(tp, lp, mp, buffers, writer=writer)

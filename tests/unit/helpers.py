"""Shared helpers of the unit tests: private providers, in-memory exporters, temporary stores.

Nothing here touches this process's global OpenTelemetry pipeline (the end-to-end tests of the same pytest process
rely on it): every provider is built here and handed to the code under test explicitly.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from omegaml_otel._internal.export.buffer import ExportBuffer
from omegaml_otel._internal.export.emitter import LogEmitter
from omegaml_otel._internal.export.store import StoreWriter
from omegaml_otel._internal.stores import Store, open_store

SERVICE = "unit-svc"
HOST = "unit-host"


def resource(**extra) -> Resource:
    return Resource.create({"service.name": SERVICE, "host.name": HOST, **extra})


def memory_logs(res: Resource | None = None) -> tuple[LoggerProvider, InMemoryLogRecordExporter]:
    """A private SDK logger provider whose records land, synchronously, in an in-memory exporter.

    (``InMemoryLogRecordExporter`` is the SDK's current name of ``InMemoryLogExporter``, which warns when built.)"""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=res or resource(), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider, exporter


def memory_spans(res: Resource | None = None) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=res or resource(), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def finished(exporter: InMemoryLogRecordExporter) -> list:
    """The finished records' API ``LogRecord``s (body, attributes, severity, event name)."""
    return [r.log_record for r in exporter.get_finished_logs()]


def store_url(tmp_path: Path) -> str:
    return "sqlite:///" + str(tmp_path / "t.sqlite")


def sqlite_store(tmp_path: Path) -> Store:
    return open_store(store_url(tmp_path))


class CollectingBuffer(ExportBuffer):
    """An ``ExportBuffer`` whose export collects the batches; its thread never wakes on its own (long interval),
    so a test decides when to ``flush()``."""

    def __init__(self, **kw):
        self.batches: list[list] = []
        super().__init__(self.batches.append, name="unit-test", interval=3600, **kw)

    @property
    def items(self) -> list:
        return [item for batch in self.batches for item in batch]


@contextmanager
def private_logger(*handlers: logging.Handler, name: str | None = None, level: int = logging.DEBUG,
                   propagate: bool = False) -> Iterator[logging.Logger]:
    """A fresh, non-root Python logger with ``handlers``; removed again afterwards."""
    logger = logging.getLogger(name or f"omtel_unit.{uuid.uuid4().hex[:8]}")
    logger.setLevel(level)
    logger.propagate = propagate
    for h in handlers:
        logger.addHandler(h)
    try:
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)


def write_logs(tmp_path: Path, records: list[tuple], res: Resource | None = None) -> Store:
    """A temporary SQLite store holding ``records``: (scope, timestamp ns, severity text, severity number, body,
    attributes), written the way the pipeline writes them (emitter fast path, then ``StoreWriter``)."""
    provider, _ = memory_logs(res)
    buffer = CollectingBuffer()
    writer = StoreWriter(store_url(tmp_path))
    try:
        emitter = LogEmitter(provider, buffer)
        for scope, ts, sev_text, sev_number, body, attrs in records:
            emitter.emit(scope, timestamp=ts, severity_number=SeverityNumber(sev_number), severity_text=sev_text,
                         body=body, attributes=attrs)
        buffer.flush()
        writer.logs(buffer.items)
    finally:
        buffer.shutdown()
    return writer.store

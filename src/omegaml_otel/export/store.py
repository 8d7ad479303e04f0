"""Exporters that write into a ``Store`` (the embedded default writes SQLite in-process)."""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from omegaml_otel.export import rows
from omegaml_otel.stores import Store, open_store, schema


class StoreWriter:
    """Opens the store on first write, so a bad path is reported when data flows, not when a process starts."""

    def __init__(self, url: str):
        self.url = url
        self._store: Store | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.url)
            return self._store

    def logs(self, records: Sequence) -> None:
        self.store.write(schema.LOGS, rows.log_rows(records))

    def spans(self, spans: Sequence) -> None:
        self.store.write(schema.TRACES, rows.span_rows(spans))

    def metrics(self, data: MetricsData) -> None:
        for table, batch in rows.metric_rows(data).items():
            self.store.write(table, batch)


class StoreMetricExporter(MetricExporter):
    def __init__(self, writer: StoreWriter):
        super().__init__()
        self.writer = writer

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        try:
            self.writer.metrics(metrics_data)
        except Exception:
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass

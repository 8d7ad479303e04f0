"""Exporters that write into a ``Store`` (the embedded default writes SQLite in-process)."""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from omegaml_otel._internal import deadline
from omegaml_otel._internal.export import rows
from omegaml_otel._internal.stores import Store, open_store, schema
from omegaml_otel.settings import settings


class StoreWriter:
    """Opens the store on first write, so a bad path is reported when data flows, not when a process starts.

    The store's engine module is imported at once, though, in the thread that builds the writer (before Celery
    forks its pool): the first write often runs in an export thread, and an import under way in another thread at
    the moment of a fork leaves that module's import lock held in the child, whose own first write then waits for
    it forever."""

    def __init__(self, url: str):
        self.url = url
        self._store: Store | None = None
        self._lock = threading.Lock()
        _import_engine(url)
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # the store is looked up again: a prefork pool child writes through the worker's main process
        # (stores/relay.py), another child opens its own
        self._lock = threading.Lock()
        self._store = None

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


def _import_engine(url: str) -> None:
    """Import the module of the engine ``url`` names (see StoreWriter); a missing extra is reported on first write."""
    scheme = urlsplit(url).scheme
    # imported here, not at the top: a process imports only the engine its store URL names (as open_store does)
    try:
        if scheme == "sqlite":
            import omegaml_otel._internal.stores.sqlite  # noqa: F401
        elif scheme in ("chdb", "clickhouse", "clickhouses"):
            import omegaml_otel._internal.stores.clickhouse  # noqa: F401
    except ImportError:
        pass


#: the writer of the exporters that a configurator builds, one per process and store URL (see _default_writer)
_writers: dict[str, StoreWriter] = {}
_writers_lock = threading.Lock()


def _default_writer() -> StoreWriter:
    """One writer for all exporters a configurator builds (opentelemetry-distro builds one per signal): one store
    connection per process, whose lock serialises the signals' writes, instead of one connection per signal opening
    and writing the same file at once."""
    url = settings().store_url
    with _writers_lock:
        writer = _writers.get(url)
        if writer is None:
            writer = _writers[url] = StoreWriter(url)
        return writer


class StoreSpanExporter(SpanExporter):
    """``OTEL_TRACES_EXPORTER=omtel`` for SDK configurators (opentelemetry-distro): spans into the store."""

    def __init__(self, writer: StoreWriter | None = None):
        self.writer = writer or _default_writer()

    def export(self, spans) -> SpanExportResult:
        try:
            self.writer.spans(spans)
        except Exception:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


class StoreLogExporter(LogRecordExporter):
    """``OTEL_LOGS_EXPORTER=omtel`` for SDK configurators: log records into the store."""

    def __init__(self, writer: StoreWriter | None = None):
        self.writer = writer or _default_writer()

    def export(self, batch) -> LogRecordExportResult:
        try:
            self.writer.logs(batch)
        except Exception:
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is written before it returns

    def shutdown(self) -> None:
        pass


class StoreMetricExporter(MetricExporter):
    """``OTEL_METRICS_EXPORTER=omtel`` for SDK configurators, and the embedded default's metric exporter."""

    def __init__(self, writer: StoreWriter | None = None, **kwargs):
        super().__init__(**kwargs)
        self.writer = writer or _default_writer()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        """Written at once, waiting for a locked store at most OMTEL_FLUSH_TIMEOUT: a profiled block's last sample
        is exported while its caller waits, and a collection that fails is dropped by the SDK anyway (the next one
        carries the cumulative values)."""
        try:
            with deadline.within(min(timeout_millis / 1000, settings().flush_timeout)):
                self.writer.metrics(metrics_data)
        except Exception:
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass

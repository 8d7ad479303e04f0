"""FanOutMetricExporter: one collection, every metric destination.

A sampler with one periodic reader per destination would run its callbacks once per reader, so the embedded store
and a collector would each get a sample of their own, taken at other instants with other values. One reader that
hands the same collected points to every exporter keeps the destinations identical and reads psutil/NVML once.
"""
from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData


class FanOutMetricExporter(MetricExporter):
    def __init__(self, exporters: Sequence[MetricExporter]):
        if not exporters:
            raise ValueError("FanOutMetricExporter needs at least one exporter")
        first = exporters[0]
        # the reader asks its exporter for temporality and aggregation: the first destination decides for all
        super().__init__(preferred_temporality=first._preferred_temporality,
                         preferred_aggregation=first._preferred_aggregation)
        self.exporters = list(exporters)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        result = MetricExportResult.SUCCESS
        for exporter in self.exporters:  # one failing destination must not starve the others
            try:
                if exporter.export(metrics_data, timeout_millis=timeout_millis) is not MetricExportResult.SUCCESS:
                    result = MetricExportResult.FAILURE
            except Exception:
                result = MetricExportResult.FAILURE
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return all([exporter.force_flush(timeout_millis) for exporter in self.exporters])

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        for exporter in self.exporters:
            exporter.shutdown(timeout_millis=timeout_millis)

"""No-loss batching for the embedded store.

The SDK's batch processors drop records once their queue (2048) is full, which a task logging 100,000 records in
a loop hits at once. ``ExportBuffer`` wakes its export thread for every full batch (SQLite releases the GIL
while it writes, so the caller goes on meanwhile) and applies back-pressure when the thread falls behind by 16
batches: then the emitting thread writes itself, so nothing is dropped while the store accepts writes. When the
store fails, batches are kept for the next try up to ``max_queue`` records; only beyond that are the oldest
dropped, and every drop is counted and reported once on stderr.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import SpanProcessor

from omegaml_otel._internal import guard

#: seconds an exiting process waits for a running export of a buffer before it gives up on what is pending
EXIT_WAIT = 15.0


class ExportBuffer:
    def __init__(self, export: Callable[[list], None], *, name: str, interval: float = 0.2,
                 max_batch: int = 4096, max_queue: int = 200_000, block: bool = True):
        """``block=False`` (a collector: it may be down for minutes) never makes the caller wait: beyond
        ``max_queue`` pending records the oldest are dropped and counted instead."""
        self._export = export
        self.name = name
        self.block = block
        self.interval = interval
        self.max_batch = max_batch
        self.high_water = 16 * max_batch
        self.max_queue = max_queue
        self.dropped = 0
        self.last_error: BaseException | None = None
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # a forked child must not re-export its parent's pending items, nor wait on a lock held at fork time
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._reported = 0

    def add(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            n = len(self._items)
        self._ensure_thread()
        if n == self.max_batch:
            self._wake.set()  # a full batch: the export thread writes it while the caller goes on
        elif not self.block:
            if n > self.max_queue:
                self._drop_oldest(n - self.max_queue)
        elif n >= self.high_water:
            self.flush()  # the export thread cannot keep up: the caller writes (back-pressure, never a drop)

    def _ensure_thread(self) -> None:
        with self._lock:
            start = self._thread is None and not self._closed
            if start:
                self._thread = threading.Thread(target=self._run, name=f"omtel-{self.name}-export", daemon=True)
        if start:
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self, lock_timeout: float = -1) -> bool:
        """Write everything pending; True when the store took it all. ``lock_timeout``: give up (False) when
        another export holds the buffer longer than that."""
        if not self._export_lock.acquire(timeout=lock_timeout):
            self.last_error = TimeoutError(f"another export of {self.name} did not end within {lock_timeout}s")
            return False
        try:
            with guard.suppressed():
                while True:
                    with self._lock:
                        batch, self._items = self._items[:self.max_batch], self._items[self.max_batch:]
                    if not batch:
                        return True
                    try:
                        self._export(batch)
                    except BaseException as exc:  # telemetry must never break the task
                        self._keep(batch, exc)
                        return False
        finally:
            self._export_lock.release()

    def force_flush(self) -> bool:
        """What an SDK ``force_flush`` means here: a store buffer writes now; a collector buffer (``block=False``)
        is only woken, so a slow or absent collector never holds up the caller (reading a store, ending a
        profiled block). ``shutdown`` still waits for the collector, once, at exit."""
        if self.block:
            return self.flush()
        self._ensure_thread()
        self._wake.set()
        return True

    def _drop_oldest(self, count: int) -> None:
        with self._lock:
            del self._items[:count]
            self.dropped += count

    def _keep(self, batch: list, exc: BaseException) -> None:
        with self._lock:
            self._items[:0] = batch
        excess = len(self._items) - self.max_queue
        if excess > 0:
            self._drop_oldest(excess)
        first = self.last_error is None
        self.last_error = exc
        if first:
            sys.__stderr__.write(f"omegaml-otel: cannot export {self.name} ({exc}); keeping up to "
                                 f"{self.max_queue} records for a retry\n")

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def shutdown(self) -> None:
        """Export what is pending and report what could not be. Safe to call again (a Celery child shuts down
        from its signal, the main process from atexit): later records are still exported, losses reported once.
        An exit never hangs on the buffer: a lock left held (a signal that interrupted a flush of this very
        thread) or an export stuck past ``EXIT_WAIT`` seconds makes the rest count as lost instead."""
        self.flush(lock_timeout=EXIT_WAIT)
        self._closed = True
        self._wake.set()
        lost = self.pending() + self.dropped
        if lost > self._reported:
            sys.__stderr__.write(f"omegaml-otel: {lost} {self.name} records could not be exported "
                                 f"({self.dropped} dropped from a full queue): {self.last_error}\n")
            self._reported = lost


class BufferedLogProcessor(LogRecordProcessor):
    def __init__(self, buffer: ExportBuffer):
        self.buffer = buffer

    def on_emit(self, log_record) -> None:
        self.buffer.add(log_record)

    def shutdown(self) -> None:
        self.buffer.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.buffer.force_flush()


class BufferedSpanProcessor(SpanProcessor):
    def __init__(self, buffer: ExportBuffer):
        self.buffer = buffer

    def on_start(self, span, parent_context=None) -> None:
        pass

    def on_end(self, span) -> None:
        self.buffer.add(span)

    def shutdown(self) -> None:
        self.buffer.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.buffer.force_flush()


class BufferedMetricExporter(MetricExporter):
    """A profiling sampler's way to a collector: its collections are queued on the process's shared collector
    buffer (one collection per batch, so a failed send is retried without duplicates), never sent in the
    sampler's thread, which also takes the sample at a profiled block's end. The buffer outlives samplers; the
    process's telemetry shuts it down at exit. Temporality stays the SDK default (cumulative): the samplers'
    gauges and up-down counters are cumulative under every OTLP temporality preference anyway."""

    def __init__(self, buffer: ExportBuffer):
        super().__init__()
        self.buffer = buffer

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        self.buffer.add(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.buffer.force_flush()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self.buffer.force_flush()

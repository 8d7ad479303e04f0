"""Batching towards the embedded store or a collector that never costs the caller more than dropping.

The SDK's batch processors drop records once their queue (2048) is full, which a task logging 100,000 records in
a loop hits at once. ``ExportBuffer`` wakes its export thread for every full batch (SQLite releases the GIL while
it writes, so the caller goes on meanwhile) and, towards the store, applies back-pressure when the thread falls
behind by 16 batches: then the emitting thread writes itself, so nothing is dropped while the store takes writes.

A destination that fails (a corrupt, locked or read-only store; a collector that refuses or never answers) is
found out by one export, and then left alone for a back-off (``retry`` seconds, doubling up to ``MAX_BACKOFF``
while it keeps failing): only the export thread retries, on that schedule; callers neither write nor wait
meanwhile. Records wait for the retry up to ``max_queue``; beyond that the oldest are dropped and counted, which is
said once on stderr when it starts and again, with the count, at exit.

A caller's flush (``flush(wait=...)``) waits at most ``wait`` seconds without progress, both for the export lock
while another export runs and for the destination itself (``deadline.within`` caps SQLite's busy timeout and an
HTTP request); then it leaves the records to the export thread. ``shutdown`` does the same within the exit budget.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import SpanProcessor

from omegaml_otel._internal import deadline, guard

#: the longest pause (seconds) between two retries of a destination that keeps failing
MAX_BACKOFF = 30.0


def _say(message: str) -> None:
    try:
        sys.__stderr__.write(f"omegaml-otel: {message}\n")
        sys.__stderr__.flush()  # a process leaving through os._exit flushes no stream
    except (AttributeError, OSError, ValueError):  # no console (pythonw), or closed at exit
        pass


class ExportBuffer:
    def __init__(self, export: Callable[[list], None], *, name: str, interval: float = 0.2,
                 max_batch: int = 4096, max_queue: int = 200_000, block: bool = True, retry: float = 1.0,
                 wait: float = 1.0, exit_wait: float = 2.0, export_timeout: float = 30.0):
        """``export`` writes one batch and raises when the destination does not take it.

        ``block=False`` (a collector: it may be down for minutes) never makes the caller wait, not even when the
        collector is healthy: beyond ``max_queue`` pending records the oldest are dropped and counted instead.
        ``wait``: how long a caller's flush waits without progress; ``exit_wait``: how long ``shutdown`` may take
        when the process's exit clock (``deadline.exiting``) is not running; ``export_timeout``: how long one
        export of the export thread may wait for the destination (OTEL_BLRP_EXPORT_TIMEOUT, OTEL_BSP_EXPORT_TIMEOUT)."""
        self._export = export
        self.name = name
        self.block = block
        self.interval = interval
        self.max_batch = max_batch
        self.high_water = 16 * max_batch
        self.max_queue = max_queue
        self.retry = retry
        self.wait = wait
        self.exit_wait = exit_wait
        self.export_timeout = export_timeout
        self._reset()
        os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork_in_parent,
                            after_in_child=self._reset)

    def _before_fork(self) -> None:
        """No export of this process is under way at a fork (waiting at most ``wait``): whatever an export holds at
        that moment (a module's import lock on its first request, a store's locks) stays held in the child, whose
        own first export then waits for it forever. Celery forks its pool while the main process exports."""
        self._held_for_fork = self._export_lock.acquire(timeout=self.wait)

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._export_lock.release()

    def _reset(self) -> None:
        # a forked child must not re-export its parent's pending items, nor wait on a lock held at fork time
        self._held_for_fork = False
        self._items: deque = deque()
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0
        #: items ever added (since the fork): a task during which it did not change skips its pre-result flush
        #: (capture/celery.py)
        self.added = 0
        self.last_error: BaseException | None = None
        self._told_drops = False
        self._reported = 0
        self._inflight = 0  # records of the batch being exported right now
        self._exported = 0  # records the destination took: the progress a waiting caller watches
        self._failing = False
        self._failed_at = 0.0
        self._backoff = 0.0
        self._retry_at = 0.0

    def add(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            self.added += 1
            n = len(self._items)
        if self._thread is None:
            self._ensure_thread()
        if n == self.max_batch:
            self._wake.set()  # a full batch: the export thread writes it while the caller goes on
        elif self._failing or not self.block:
            if n > self.max_queue:
                self._drop_oldest(n - self.max_queue)  # never a retry here: the export thread retries on its back-off
        elif n >= self.high_water:
            self.flush(wait=self.wait)  # the export thread cannot keep up: the caller writes (back-pressure, no drop)

    def _ensure_thread(self) -> None:
        with self._lock:
            start = self._thread is None and not self._closed
            if start:
                self._thread = threading.Thread(target=self._run, name=f"omtel-{self.name}-export", daemon=True)
        if start:
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(max(0.0, self._retry_at - time.monotonic()) if self._failing else self.interval)
            self._wake.clear()
            if self._closed:
                break
            if self._failing and time.monotonic() < self._retry_at:
                continue  # a full batch woke the thread during a back-off: the retry keeps its time
            self.flush()

    @property
    def failing(self) -> bool:
        """The last export failed (or made no progress within a caller's wait) and no export succeeded since."""
        return self._failing

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def unexported(self) -> int:
        """Records not yet taken by the destination: pending, and those of an export under way."""
        with self._lock:
            return len(self._items) + self._inflight

    def flush(self, wait: float | None = None) -> bool:
        """Write everything pending; True when the destination took it all.

        ``wait=None`` (the export thread, an explicit flush) tries now and waits for the destination up to the
        export timeout per batch.
        A number is a caller's flush (before a task's result is sent, after a log call outside a task, before a
        read): a destination known to be failing is left to the export thread at once, and otherwise the flush
        gives up after ``wait`` seconds without progress, leaving the records to the export thread."""
        if wait is not None and self._failing:
            return False
        return self._write(wait)

    def _write(self, wait: float | None) -> bool:
        started = time.monotonic()
        if not self._acquire(wait):
            waited = time.monotonic() - started
            self._fail(TimeoutError(
                f"another export of {self.name} made no progress for {waited:.1f} s (a store locked by another "
                "process, or a collector that does not answer)" if deadline.remaining(wait) > 0 else
                f"the time left ran out while another export of {self.name} was under way"))
            return False
        try:
            with guard.suppressed():
                tried = False
                while True:
                    batch = self._take()
                    if not batch:
                        if self._failing and not tried:  # nothing to retry with: the back-off starts over
                            self._retry_at = time.monotonic() + self._backoff
                        return True
                    tried = True
                    try:
                        with deadline.within(self.export_timeout if wait is None else wait):
                            self._export(batch)
                    except BaseException as exc:  # telemetry must never break the task
                        self._keep(batch, exc)
                        return False
                    self._took(len(batch))
        finally:
            self._export_lock.release()

    def _acquire(self, wait: float | None) -> bool:
        """The export lock. A caller waits for it only while the export holding it makes progress (a long but
        healthy drain goes on being waited for; a store locked by another process does not)."""
        if wait is None:
            return self._export_lock.acquire()
        while True:
            seen = self._exported
            if self._export_lock.acquire(timeout=deadline.remaining(wait)):
                return True
            if self._exported == seen or deadline.remaining(wait) <= 0:
                return False

    def _take(self) -> list:
        with self._lock:
            items = self._items
            if len(items) <= self.max_batch:
                batch = list(items)
                items.clear()
            else:
                batch = [items.popleft() for _ in range(self.max_batch)]
            self._inflight = len(batch)
        return batch

    def _took(self, count: int) -> None:
        with self._lock:
            self._inflight = 0
            self._exported += count
        if self._failing:
            self._failing = False
            dropped = f"; {self.dropped} records dropped so far" if self.dropped else ""
            _say(f"exporting {self.name} again after {time.monotonic() - self._failed_at:.1f} s{dropped}")

    def _keep(self, batch: list, exc: BaseException) -> None:
        with self._lock:
            self._inflight = 0
            self._items.extendleft(reversed(batch))
            excess = len(self._items) - self.max_queue
        self._fail(exc)
        if excess > 0:
            self._drop_oldest(excess)

    def _fail(self, exc: BaseException) -> None:
        """Callers stop writing and waiting; the export thread retries after a back-off that doubles while the
        destination keeps failing. Said once per outage, not per retry."""
        self.last_error = exc
        first = not self._failing
        self._backoff = self.retry if first else min(2 * self._backoff, MAX_BACKOFF)
        self._retry_at = time.monotonic() + self._backoff
        self._failing = True
        if first:
            self._failed_at = time.monotonic()
            _say(f"cannot export {self.name} ({exc}); up to {self.max_queue} records wait for a retry in the "
                 f"background (after {self._backoff:g} s, then less often while it fails)")

    def _drop_oldest(self, count: int) -> None:
        with self._lock:
            items = self._items
            count = min(count, len(items))
            for _ in range(count):
                items.popleft()
            self.dropped += count
        if not self._told_drops:
            self._told_drops = True
            _say(f"more than {self.max_queue} {self.name} records wait for export (OMTEL_MAX_QUEUE): dropping the "
                 "oldest; how many is reported at exit")

    def force_flush(self, timeout: float | None = None) -> bool:
        """What an SDK ``force_flush`` means here: a store buffer writes now, as a caller's flush (bounded, and
        not at all while the store is failing); a collector buffer (``block=False``) is only woken, so a slow or
        absent collector never holds up the caller (reading a store, ending a profiled block)."""
        if self.block:
            return self.flush(wait=self.wait if timeout is None else min(timeout, self.wait))
        self._ensure_thread()
        self._wake.set()
        return True

    def shutdown(self) -> None:
        """Export what is pending within the exit budget, then report what could not be exported.

        The budget is what is left of the process's exit clock (``deadline.exiting``), else ``exit_wait``. One
        last attempt is made even at a destination known to be failing; a lock held by an export that does not end
        (a hanging collector, a store locked by another process, a signal that interrupted a flush of this very
        thread) only makes the rest count as lost. Safe to call again (a Celery child shuts down from its signal
        and before ``os._exit``, the main process from atexit and from its providers): records added since are
        exported within what is left, and losses are reported once."""
        left = deadline.remaining(self.exit_wait)
        with deadline.within(left):
            if self.unexported():
                self._write(left)
        self._closed = True
        self._wake.set()
        self.report()

    def report(self) -> None:
        """Say on stderr how many records could not be exported, when more than said before."""
        lost = self.unexported() + self.dropped
        if lost > self._reported:
            reason = self.last_error or "the exit budget (OMTEL_EXIT_TIMEOUT) was spent"
            _say(f"{lost} {self.name} records could not be exported ({self.dropped} dropped from a full queue): "
                 f"{reason}")
            self._reported = lost


class BufferedLogProcessor(LogRecordProcessor):
    def __init__(self, buffer: ExportBuffer):
        self.buffer = buffer

    def on_emit(self, log_record) -> None:
        self.buffer.add(log_record)

    def shutdown(self) -> None:
        self.buffer.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.buffer.force_flush(timeout_millis / 1000)


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
        return self.buffer.force_flush(timeout_millis / 1000)


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

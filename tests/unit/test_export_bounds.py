"""Bounds of the write path: an ExportBuffer in front of a real SQLite store that is corrupt or locked, SQLite
writes under a caller's deadline, and the deadline helpers.

The stores are real temporary files (corrupt: random bytes; locked: another connection holding BEGIN EXCLUSIVE).
One test makes an export that never returns with a thread blocked on an event: a destination that hangs, which the
end-to-end tests (tests/test_bad_day_export.py) cause for real with a collector that never answers.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from omegaml_otel._internal import deadline
from omegaml_otel._internal.export.buffer import ExportBuffer
from omegaml_otel._internal.export.emitter import LogEmitter
from omegaml_otel._internal.export.otlp import BoundedSession
from omegaml_otel._internal.export.store import StoreMetricExporter, StoreWriter
from omegaml_otel._internal.stores import StoreError, open_store, schema
from omegaml_otel.errors import ExportFailed
from omegaml_otel.settings import settings

from .helpers import memory_logs, store_url


def _emit(emitter: LogEmitter, n: int, body: str = "record") -> None:
    for i in range(n):
        emitter.emit("bounds", timestamp=time.time_ns(), severity_number=SeverityNumber.INFO, severity_text="INFO",
                     body=f"{body} {i}", attributes={})


def _rows(tmp_path) -> int:
    con = sqlite3.connect(tmp_path / "t.sqlite")
    try:
        return con.execute("SELECT count(*) FROM otel_logs").fetchone()[0]
    finally:
        con.close()


class Counting:
    """Counts the exports tried against the real writer."""

    def __init__(self, export):
        self.export, self.calls = export, 0

    def __call__(self, batch):
        self.calls += 1
        self.export(batch)


def test_a_corrupt_store_is_tried_once_per_back_off_and_recovers(tmp_path, capfd):
    (tmp_path / "t.sqlite").write_bytes(os.urandom(16 * 1024))
    writer = StoreWriter(store_url(tmp_path))
    export = Counting(writer.logs)
    buffer = ExportBuffer(export, name="logs", interval=0.02, max_batch=100, max_queue=1_000, retry=0.15)
    emitter = LogEmitter(memory_logs()[0], buffer)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 0.5:  # records far beyond max_queue, for half a second
            _emit(emitter, 500)
            assert buffer.flush(wait=1.0) is False  # a caller's flush while it fails: at once, no attempt
        # the first export, then retries 0.15 s and 0.3 s later (the back-off doubles): not one per record
        assert 1 <= export.calls <= 3, export.calls
        assert buffer.failing and buffer.pending() == 1_000 and buffer.dropped > 1_000
        (tmp_path / "t.sqlite").unlink()  # the store can be written again (a fresh file)
        deadline_ = time.monotonic() + 5
        while (buffer.failing or buffer.unexported()) and time.monotonic() < deadline_:
            time.sleep(0.02)
        assert not buffer.failing
        assert _rows(tmp_path) == 1_000  # what was kept for the retry is written by the export thread
    finally:
        buffer.shutdown()
    err = capfd.readouterr().err
    assert err.count("cannot export logs (cannot open store") == 1
    assert err.count("dropping the oldest") == 1
    assert "exporting logs again after" in err
    assert f"{buffer.dropped} logs records could not be exported ({buffer.dropped} dropped" in err


def test_a_locked_store_costs_a_caller_one_bounded_wait(tmp_path):
    writer = StoreWriter(store_url(tmp_path))
    buffer = ExportBuffer(writer.logs, name="logs", interval=3600, max_batch=100, retry=0.2)
    emitter = LogEmitter(memory_logs()[0], buffer)
    _emit(emitter, 10)
    assert buffer.flush(wait=1.0) is True  # creates the schema
    other = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        _emit(emitter, 10, "locked")
        started = time.monotonic()
        assert buffer.flush(wait=0.3) is False
        assert 0.25 < time.monotonic() - started < 1.0
        assert buffer.failing and "locked" in str(buffer.last_error)
        started = time.monotonic()
        assert buffer.flush(wait=0.3) is False and time.monotonic() - started < 0.05  # no second wait
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert buffer.flush() is True and not buffer.failing  # an explicit flush tries now
    assert _rows(tmp_path) == 20
    buffer.shutdown()


def test_a_caller_waits_for_a_slow_export_only_while_it_makes_progress():
    """An export thread that writes a long queue batch by batch is waited for; one that hangs is not."""
    written, release = [], threading.Event()

    def slow(batch):
        time.sleep(0.02)
        written.extend(batch)

    buffer = ExportBuffer(slow, name="slow", interval=3600, max_batch=10)
    for i in range(200):  # 20 batches: about 0.4 s, longer than the caller's wait of 0.15 s
        buffer.add(i)
    drain = threading.Thread(target=buffer.flush)
    drain.start()
    time.sleep(0.02)
    assert buffer.flush(wait=0.15) is True and len(written) == 200
    drain.join()

    def hang(batch):  # a destination that never answers (see the module docstring)
        release.wait(10)

    stuck = ExportBuffer(hang, name="stuck", interval=3600, max_batch=10)
    stuck.add(1)
    threading.Thread(target=stuck.flush, daemon=True).start()
    time.sleep(0.02)
    started = time.monotonic()
    assert stuck.flush(wait=0.15) is False
    assert time.monotonic() - started < 1.0 and stuck.failing
    release.set()


def test_shutdown_reports_records_in_flight_when_the_exit_budget_ends(capfd):
    release = threading.Event()
    buffer = ExportBuffer(lambda batch: release.wait(10), name="traces to otlp", interval=3600, max_batch=5,
                          block=False, exit_wait=0.3)
    for i in range(12):
        buffer.add(i)
    threading.Thread(target=buffer.flush, daemon=True).start()  # an export that hangs with 5 records
    time.sleep(0.05)
    started = time.monotonic()
    buffer.shutdown()
    assert time.monotonic() - started < 1.0
    assert "12 traces to otlp records could not be exported (0 dropped" in capfd.readouterr().err
    release.set()


def test_sqlite_waits_for_a_lock_only_as_long_as_its_caller_may(tmp_path):
    store = open_store(store_url(tmp_path))
    row = tuple([None] * len(schema.columns(schema.LOGS)))
    store.write(schema.LOGS, [row])
    other = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with deadline.within(0.3), pytest.raises(StoreError, match="locked"):
            store.write(schema.LOGS, [row])
        assert 0.25 < time.monotonic() - started < 1.0
        waiting = threading.Thread(target=store.write, args=(schema.LOGS, [row]))  # no deadline: it waits
        waiting.start()
        time.sleep(0.3)
        assert waiting.is_alive()
    finally:
        other.execute("ROLLBACK")
        other.close()
    waiting.join(5)
    assert not waiting.is_alive() and _rows(tmp_path) == 2


def test_deadlines_nest_and_bound_calls_that_do_not_bound_themselves():
    assert deadline.remaining(7.0) == 7.0
    with deadline.within(5.0):
        assert 4.9 < deadline.remaining(30.0) <= 5.0
        with deadline.within(60.0):  # a farther bound inside a nearer one keeps the nearer
            assert deadline.remaining(30.0) <= 5.0
        assert deadline.remaining(1.0) == 1.0
    seen = []
    with deadline.within(2.0):  # the bound holds in the thread run_within starts
        assert deadline.run_within(lambda: seen.append(deadline.remaining(30.0)), 1.0) is True
    assert 0 < seen[0] <= 2.0
    started = time.monotonic()
    assert deadline.run_within(lambda: time.sleep(3), 0.2) is False
    assert time.monotonic() - started < 1.0

    def fails():
        raise ExportFailed("collector down")

    assert deadline.run_within(fails, 1.0) is False


def test_a_metric_export_waits_for_a_locked_store_at_most_the_flush_timeout(tmp_path):
    """A profiled block's last sample is exported while its caller waits (ProfileSampler.stop)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider.get_meter("bounds").create_counter("bounds.count").add(1)
    data = reader.get_metrics_data()
    writer = StoreWriter(store_url(tmp_path))
    exporter = StoreMetricExporter(writer)
    assert exporter.export(data).name == "SUCCESS"
    other = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        assert exporter.export(data, timeout_millis=200).name == "FAILURE"  # the reader's timeout, if shorter
        assert 0.15 < time.monotonic() - started < 0.7
        with deadline.within(60):
            started = time.monotonic()
            assert exporter.export(data).name == "FAILURE"
            assert time.monotonic() - started < settings().flush_timeout + 0.5
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert exporter.export(data).name == "SUCCESS"
    provider.shutdown()


def test_a_collector_url_with_credentials_is_masked_in_the_error():
    with socket.socket() as s:  # a port that refuses: bound, never listened on, closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session = BoundedSession()
    try:
        session.post(f"http://otlp:s3cr3t@127.0.0.1:{port}/v1/logs", data=b"", timeout=2)
    except ExportFailed as exc:
        message = str(exc)
    else:
        raise AssertionError("a refused connection must raise ExportFailed")
    assert "s3cr3t" not in message and f"http://otlp:***@127.0.0.1:{port}/v1/logs" in message, message

"""ExportBuffer: no loss while the destination takes writes; with a collector down, bounded, counted drops.

The failing destination is a plain function that raises: a collector that refuses every export, which this
test cannot otherwise make happen in a bounded time (the real one is covered in test_autoinstrument).
"""
from __future__ import annotations

import re
import threading
import time

from omegaml_otel._internal.export.buffer import ExportBuffer


def test_nothing_lost_while_the_store_takes_writes():
    written = []
    buf = ExportBuffer(written.extend, name="t", interval=0.01, max_batch=100)
    threads = [threading.Thread(target=lambda k=k: [buf.add((k, i)) for i in range(5_000)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert buf.flush()
    assert len(written) == 20_000 and len(set(written)) == 20_000


def test_collector_down_never_blocks_and_counts_drops(capfd):
    def refuse(batch):
        time.sleep(0.01)
        raise ConnectionError("collector down")

    buf = ExportBuffer(refuse, name="logs to otlp", interval=0.01, max_batch=50, max_queue=1_000, block=False)
    started = time.monotonic()
    for i in range(20_000):
        buf.add(i)
    assert time.monotonic() - started < 2  # the caller never waits for the export
    assert buf.pending() <= 1_000
    assert buf.dropped >= 19_000 - 50
    buf.shutdown()
    err = capfd.readouterr().err
    assert "cannot export logs to otlp (collector down)" in err
    reported = re.search(r"(\d+) logs to otlp records could not be exported \((\d+) dropped", err)
    assert reported and int(reported[1]) >= 19_000 and int(reported[2]) >= 19_000 - 50
    buf.shutdown()  # reported once
    assert "could not be exported" not in capfd.readouterr().err


def test_store_failure_keeps_records_for_a_retry():
    calls = {"n": 0}
    written = []

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        written.extend(batch)

    buf = ExportBuffer(flaky, name="t", interval=60, max_batch=1_000)
    for i in range(10):
        buf.add(i)
    assert buf.flush() is False and buf.pending() == 10
    assert buf.flush() is True and written == list(range(10))


def test_shutdown_never_hangs_on_a_held_lock(capfd):
    """A signal that lands between a flush's lock acquire and its ``with`` block leaves the lock held by the
    exiting thread itself; shutdown then gives up after its exit wait and reports, instead of hanging the exit.
    (Such a signal cannot be timed for real in a test: the lock is held by hand.)"""
    written = []
    buf = ExportBuffer(written.extend, name="logs", interval=60, max_batch=100, exit_wait=0.2)
    buf.add(1)
    buf._export_lock.acquire()
    started = time.monotonic()
    buf.shutdown()
    assert time.monotonic() - started < 2 and written == []
    assert "1 logs records could not be exported" in capfd.readouterr().err
    buf._export_lock.release()

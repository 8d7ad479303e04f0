"""StreamBridge: print output -> log records, on a StringIO (never the real sys.stdout)."""
from __future__ import annotations

import io
import logging
import sys

from opentelemetry._logs import SeverityNumber

from omegaml_otel._internal import guard
from omegaml_otel._internal.capture import streams
from omegaml_otel._internal.capture.context import record_attributes
from omegaml_otel._internal.capture.logbridge import LogBridge
from omegaml_otel._internal.capture.streams import StreamBridge, redirect
from omegaml_otel.conventions import IOSTREAM

from .helpers import finished, memory_logs, private_logger


def _bridge(name="stdout"):
    provider, exporter = memory_logs()
    original = io.StringIO()
    return StreamBridge(original, name, provider), original, exporter


def test_one_record_per_complete_line_and_passthrough():
    bridge, original, exporter = _bridge()
    assert bridge.write("first line\nsecond ") == len("first line\nsecond ")
    assert [r.body for r in finished(exporter)] == ["first line"]
    bridge.write("line\nthird\n")
    recs = finished(exporter)
    assert [r.body for r in recs] == ["first line", "second line", "third"]
    assert original.getvalue() == "first line\nsecond line\nthird\n"
    assert all(r.severity_number == SeverityNumber.INFO and r.severity_text == "INFO" for r in recs)
    assert all(dict(r.attributes) == {IOSTREAM: "stdout"} for r in recs)
    assert {r.instrumentation_scope.name for r in exporter.get_finished_logs()} == {"stdout"}


def test_partial_line_kept_until_flush_partial():
    bridge, original, exporter = _bridge()
    bridge.write("no newline yet")
    assert finished(exporter) == []
    assert original.getvalue() == "no newline yet"  # the console still sees it at once
    bridge.flush_partial()
    assert [r.body for r in finished(exporter)] == ["no newline yet"]
    bridge.flush_partial()  # nothing left: no empty record
    assert len(finished(exporter)) == 1


def test_blank_lines_and_carriage_returns():
    bridge, _, exporter = _bridge()
    bridge.write("\n   \nwindows\r\n")
    assert [r.body for r in finished(exporter)] == ["windows"]


def test_stderr_is_error_and_carries_record_attributes():
    bridge, original, exporter = _bridge("stderr")
    token = record_attributes.set({"celery.task_id": "t-9"})
    try:
        print("boom", file=bridge)
    finally:
        record_attributes.reset(token)
    [rec] = finished(exporter)
    assert (rec.body, rec.severity_number, rec.severity_text) == ("boom", SeverityNumber.ERROR, "ERROR")
    assert dict(rec.attributes) == {"celery.task_id": "t-9", IOSTREAM: "stderr"}
    assert exporter.get_finished_logs()[0].instrumentation_scope.name == "stderr"
    assert original.getvalue() == "boom\n"


def test_bytes_through_buffer_keep_invalid_utf8_as_escapes():
    bridge, original, exporter = _bridge()
    assert bridge.buffer.write(b"caf\xc3\xa9 \xff\xfe end\n") == 13
    [rec] = finished(exporter)
    assert rec.body == "café \\xff\\xfe end"
    assert original.getvalue() == "café \\xff\\xfe end\n"


def test_a_character_split_across_two_buffer_writes_is_decoded_whole():
    bridge, original, exporter = _bridge()
    bridge.buffer.write(b"caf\xc3")
    bridge.buffer.write(b"\xa9\n")
    [rec] = finished(exporter)
    assert rec.body == "café"
    assert original.getvalue() == "café\n"


def test_bytes_written_directly_are_decoded():
    bridge, _, exporter = _bridge()
    bridge.write(b"raw bytes\n")
    assert [r.body for r in finished(exporter)] == ["raw bytes"]


def test_guard_suppressed_passes_through_only():
    bridge, original, exporter = _bridge()
    with guard.suppressed():
        bridge.write("console only\n")
    assert finished(exporter) == []
    assert original.getvalue() == "console only\n"


def test_closed_original_does_not_fail_the_write():
    bridge, original, exporter = _bridge()
    original.close()
    assert bridge.write("still captured\n") == len("still captured\n")
    bridge.flush()
    assert [r.body for r in finished(exporter)] == ["still captured"]


def test_redirect_sends_lines_to_a_python_logger():
    bridge, original, exporter = _bridge()
    log_provider, log_exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=log_provider)) as log:
        token = redirect.set((log, logging.WARNING))
        try:
            bridge.write("to the logger\npartial")
            bridge.flush_partial()
        finally:
            redirect.reset(token)
    assert finished(exporter) == []  # the bridge's own emitter is not used
    assert original.getvalue() == ""  # and nothing is written through under a redirect
    recs = finished(log_exporter)
    assert [r.body for r in recs] == ["to the logger", "partial"]
    assert all(r.severity_text == "WARNING" and dict(r.attributes) == {IOSTREAM: "stdout"} for r in recs)
    assert {r.instrumentation_scope.name for r in log_exporter.get_finished_logs()} == {log.name}


def test_installed_bridges_and_restores_sys_streams(capsys):
    provider, exporter = memory_logs()
    before = sys.stdout, sys.stderr
    try:
        with streams.installed(provider):
            assert isinstance(sys.stdout, StreamBridge) and isinstance(sys.stderr, StreamBridge)
            print("to out")
            print("to err", file=sys.stderr)
            print("unterminated", end="")
    finally:
        if (sys.stdout, sys.stderr) != before:  # never leave a bridge on the process's streams
            sys.stdout, sys.stderr = before
            raise AssertionError("installed() did not restore sys.stdout/sys.stderr")
    got = [(r.body, r.severity_text) for r in finished(exporter)]
    assert got == [("to out", "INFO"), ("to err", "ERROR"), ("unterminated", "INFO")]
    out, err = capsys.readouterr()
    assert out == "to out\nunterminated" and err == "to err\n"

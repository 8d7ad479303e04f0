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
from omegaml_otel.settings import settings

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


# -- progress bars and long lines --------------------------------------------------------------------------------
def _limited(max_line):
    provider, exporter = memory_logs()
    original = io.StringIO()
    return StreamBridge(original, "stdout", provider, max_line=max_line), original, exporter


def test_carriage_return_updates_keep_the_latest_state_of_the_line():
    bridge, original, exporter = _bridge()
    for i in range(1, 2001):
        bridge.write(f"\rprogress {i}/2000")
    assert finished(exporter) == []
    assert bridge.current_line().size == len("progress 2000/2000")  # the earlier states were let go, not accumulated
    bridge.write("\n")
    bridge.write("epoch 1 5% \r epoch 1 100%\n")  # a \r inside one write too
    assert [r.body for r in finished(exporter)] == ["progress 2000/2000", " epoch 1 100%"]
    assert original.getvalue().count("\r") == 2001  # the console still gets every update


def test_a_carriage_return_at_the_end_of_a_write_may_be_half_of_a_crlf():
    bridge, _, exporter = _bridge()
    bridge.write("windows\r")
    bridge.write("\nnext\r")
    bridge.write("over")  # now the \r did move back to the start of the line
    bridge.write("\r\r")
    bridge.flush_partial()
    assert [r.body for r in finished(exporter)] == ["windows", "over"]


def test_a_line_cleared_with_carriage_return_and_spaces_is_not_stored():
    bridge, _, exporter = _bridge()
    bridge.write("working...\r          \r")
    bridge.write("\n")
    assert finished(exporter) == []


def test_a_long_line_is_split_with_a_marker():
    bridge, _, exporter = _limited(100)
    bridge.write("a" * 150)
    [first] = finished(exporter)  # emitted as soon as it is full: memory stays bounded without a newline
    assert first.body == "a" * 100 + streams.CONTINUED
    bridge.write("b" * 120 + "\nshort\n")
    bodies = [r.body for r in finished(exporter)]
    assert bodies == ["a" * 100 + streams.CONTINUED, "a" * 50 + "b" * 50 + streams.CONTINUED, "b" * 70, "short"]


def test_many_small_writes_of_one_line_are_joined_once():
    bridge, _, exporter = _bridge()
    for i in range(5000):
        bridge.write(str(i % 10))
    line = bridge.current_line()
    assert len(line.pieces) == 5000 and line.size == 5000  # kept as pieces, not re-copied per write
    bridge.write("\n")
    [rec] = finished(exporter)
    assert rec.body == "0123456789" * 500


def test_max_line_comes_from_the_settings():
    bridge, _, _ = _bridge()
    assert bridge.max_line == settings().max_line == 65_536

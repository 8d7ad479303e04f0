"""LogBridge: Python logging records -> OTel log records, on a private logger and a private provider."""
from __future__ import annotations

import logging

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor

from omegaml_otel._internal import guard
from omegaml_otel._internal.capture.context import record_attributes
from omegaml_otel._internal.capture.logbridge import CLAIMED, LogBridge

from .helpers import finished, memory_logs, private_logger


def test_body_severity_scope_and_time():
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        log.warning("disk %s at %d%%", "/data", 93)
    [rec] = exporter.get_finished_logs()
    lr = rec.log_record
    assert lr.body == "disk /data at 93%"
    assert lr.severity_number == SeverityNumber.WARN
    assert lr.severity_text == "WARNING"
    assert rec.instrumentation_scope.name == log.name
    assert rec.resource.attributes["service.name"] == "unit-svc"
    assert lr.timestamp > 0 and lr.observed_timestamp >= lr.timestamp


def test_severities_follow_python_levels():
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        log.debug("d")
        log.info("i")
        log.error("e")
        log.critical("c")
    got = [(r.body, r.severity_number, r.severity_text) for r in finished(exporter)]
    assert got == [("d", SeverityNumber.DEBUG, "DEBUG"), ("i", SeverityNumber.INFO, "INFO"),
                   ("e", SeverityNumber.ERROR, "ERROR"), ("c", SeverityNumber.FATAL, "CRITICAL")]


def test_handler_level_filters():
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logging.WARNING, logger_provider=provider)) as log:
        log.info("dropped")
        log.warning("kept")
    assert [r.body for r in finished(exporter)] == ["kept"]


def test_extra_attributes_copied_and_non_primitives_stringified():
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        log.info("with extra", extra={"user": "ann", "count": 3, "ratio": 0.5, "ok": True, "items": [1, 2],
                                      "where": {"a": 1}})
        log.info("plain")
    with_extra, plain = finished(exporter)
    attrs = dict(with_extra.attributes)
    assert attrs == {"user": "ann", "count": 3, "ratio": 0.5, "ok": True, "items": "[1, 2]", "where": "{'a': 1}"}
    # none of the LogRecord's own fields leak into the attributes
    assert not dict(plain.attributes or {})


def test_handler_attributes_and_record_attributes_merged():
    provider, exporter = memory_logs()
    token = record_attributes.set({"celery.task_id": "t-1", "job.name": "nb"})
    try:
        with private_logger(LogBridge(logger_provider=provider, attributes={"omegaml.log.dataset": "ds"})) as log:
            log.info("in task", extra={"job.name": "override"})
    finally:
        record_attributes.reset(token)
    [rec] = finished(exporter)
    # the package's own attribute wins; the user's value is kept under extra.<key>
    assert dict(rec.attributes) == {"celery.task_id": "t-1", "job.name": "nb", "extra.job.name": "override",
                                    "omegaml.log.dataset": "ds"}
    # the shared context value itself was not mutated by adding to it
    assert record_attributes.get() == {}


def test_exception_attributes():
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        try:
            raise KeyError("missing-key")
        except KeyError:
            log.exception("lookup failed")
    [rec] = finished(exporter)
    attrs = dict(rec.attributes)
    assert rec.body == "lookup failed"
    assert rec.severity_number == SeverityNumber.ERROR
    assert attrs["exception.type"] == "KeyError"
    assert attrs["exception.message"] == "'missing-key'"
    assert attrs["exception.stacktrace"].startswith("Traceback (most recent call last)")
    assert "raise KeyError(\"missing-key\")" in attrs["exception.stacktrace"]


def test_claim_marks_record_so_a_second_bridge_skips_it():
    provider, exporter = memory_logs()
    parent_bridge = LogBridge(logger_provider=provider)
    with private_logger(parent_bridge) as parent:
        with private_logger(LogBridge(logger_provider=provider, claim=True), name=parent.name + ".child",
                            propagate=True) as child:
            child.info("once")
        assert [r.body for r in finished(exporter)] == ["once"]
        # without claim, the same arrangement stores the record twice: the claim is what prevents it
        exporter.clear()
        with private_logger(LogBridge(logger_provider=provider), name=parent.name + ".other",
                            propagate=True) as other:
            other.info("twice")
        assert [r.body for r in finished(exporter)] == ["twice", "twice"]


def test_claimed_record_flag_set_and_respected():
    provider, exporter = memory_logs()
    bridge = LogBridge(logger_provider=provider, claim=True)
    record = logging.LogRecord("omtel_unit.x", logging.INFO, __file__, 1, "hello", (), None)
    assert bridge.handle(record) is True
    assert getattr(record, CLAIMED) is True
    assert bridge.handle(record) is False
    assert LogBridge(logger_provider=provider).handle(record) is False
    assert len(finished(exporter)) == 1


def test_opentelemetry_loggers_never_bridged():
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider), name="opentelemetry.omtel_unit_private") as log:
        log.warning("export failed")
    with private_logger(LogBridge(logger_provider=provider), name="opentelemetryish.omtel_unit") as log:
        log.warning("also an opentelemetry* name")
    assert finished(exporter) == []


def test_nothing_bridged_while_guard_suppressed():
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        with guard.suppressed():
            log.info("from an exporter")
        log.info("after")
    assert [r.body for r in finished(exporter)] == ["after"]


def test_args_not_fitting_the_format_keep_msg_and_args():
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        log.info("a %s and %s", "one")
    [rec] = finished(exporter)
    assert rec.body == "a %s and %s ('one',)"


class _FailingProcessor(LogRecordProcessor):
    def on_emit(self, log_record) -> None:
        raise RuntimeError("processor exploded")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_failing_emitter_never_raises_and_reports_once(capfd):
    provider, exporter = memory_logs()
    provider.add_log_record_processor(_FailingProcessor())
    with private_logger(LogBridge(logger_provider=provider)) as log:
        log.info("first")
        log.info("second")
    err = capfd.readouterr().err
    assert err.count("omegaml-otel: could not bridge a log record of") == 1
    assert "processor exploded" in err
    # the in-memory processor before the failing one still got both records
    assert [r.body for r in finished(exporter)] == ["first", "second"]


class _Unprintable:
    def __str__(self):
        raise ValueError("no str for you")


def test_attribute_that_cannot_be_stringified_keeps_the_record(capfd):
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        log.info("bad extra", extra={"thing": _Unprintable()})
        log.info("good")
    bad, good = finished(exporter)
    assert (bad.body, good.body) == ("bad extra", "good")
    assert dict(bad.attributes) == {"thing": "<unprintable _Unprintable object: ValueError in str()>"}
    assert "could not bridge" not in capfd.readouterr().err


def test_extra_cannot_override_the_packages_own_attributes():
    """The package's attributes win; the user's value is kept, renamed to extra.<key>."""
    provider, exporter = memory_logs()
    token = record_attributes.set({"celery.task_id": "t-1"})
    try:
        with private_logger(LogBridge(logger_provider=provider, attributes={"omegaml.log.dataset": "ds"})) as log:
            log.info("forged", extra={"omegaml.levelno": 999, "celery.task_id": "fake", "omegaml.log.dataset": "x",
                                      "celery.task_name": "other", "mine": 1})
            try:
                raise KeyError("real")
            except KeyError:
                log.exception("failed", extra={"exception.type": "Fake"})
    finally:
        record_attributes.reset(token)
    forged, failed = finished(exporter)
    assert dict(forged.attributes) == {
        "celery.task_id": "t-1", "omegaml.log.dataset": "ds", "mine": 1, "extra.omegaml.levelno": 999,
        "extra.celery.task_id": "fake", "extra.omegaml.log.dataset": "x", "extra.celery.task_name": "other"}
    attrs = dict(failed.attributes)
    assert attrs["exception.type"] == "KeyError" and attrs["extra.exception.type"] == "Fake"


class _BadStr:
    def __str__(self):
        raise RuntimeError("broken __str__")

    def __repr__(self):
        raise RuntimeError("broken __repr__")


def test_a_message_whose_str_raises_is_kept_with_a_placeholder(capfd):
    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        log.info(_BadStr())
        log.info("value %s", _BadStr())
        log.info("after")
    bodies = [r.body for r in finished(exporter)]
    assert bodies == ["<unprintable _BadStr object: RuntimeError in str()> ()",
                      "value %s <unprintable tuple object: RuntimeError in repr()>", "after"]
    assert capfd.readouterr().err == ""  # nothing raised, nothing to report


def test_an_exception_whose_str_raises_is_kept():
    class Weird(Exception):
        def __str__(self):
            raise RuntimeError("no")

    provider, exporter = memory_logs()
    with private_logger(LogBridge(logger_provider=provider)) as log:
        try:
            raise Weird()
        except Weird:
            log.exception("failed")
    [rec] = finished(exporter)
    attrs = dict(rec.attributes)
    assert rec.body == "failed" and attrs["exception.type"] == "Weird"
    assert attrs["exception.message"] == "<unprintable Weird object: RuntimeError in str()>"


def test_celery_data_extra_is_scrubbed_by_key():
    """Celery logs 'Task ... received' with extra={'data': context}; its kwargs are a repr string, and a secret
    can also be a dict value under a secret key."""
    provider, exporter = memory_logs()
    data = {"id": "t-1", "name": "ping", "kwargs": "{'password': 'hunter2', 'fox': 'bar'}", "args": "()",
            "auth": {"user": "u", "pw": "hunter2"}}
    with private_logger(LogBridge(logger_provider=provider)) as log:
        log.info("Task %(name)s[%(id)s] received", data, extra={"data": data})
    [rec] = finished(exporter)
    stored = dict(rec.attributes)["data"]
    assert "hunter2" not in stored and "'fox': 'bar'" in stored and "'id': 't-1'" in stored
    assert "[Scrubbed due to password]" in stored and "'auth': '[Scrubbed due to auth]'" in stored
    assert rec.body == "Task ping[t-1] received"
    assert data["auth"]["pw"] == "hunter2"  # the caller's dict is untouched

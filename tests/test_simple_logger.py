"""om.logger: omega-ml's simple logger and its log dataset (omegaml-behaviour §1, tests of §5.1), plus filters."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

COLUMNS = ["level", "levelno", "logger", "msg", "text", "hostname", "created"]
EXTRA = ["userid", "taskid", "trace_id", "span_id", "service"]
LEVELS = ["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@pytest.fixture
def restore_python_loggers():
    """omega-ml's tearDown restores the root level; we also restore the level of every logger we touch."""
    names = ["root", "mytestlogger"]
    saved = {n: logging.getLogger(n).level for n in names}
    yield
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


# -- omegaml-behaviour §5.1 ---------------------------------------------------------------------------------------
def test_simple_logger(om):
    from omegaml_otel._internal.compat.logger import SimpleLogger

    om.logger.reset()
    assert isinstance(om.logger, SimpleLogger)
    om.logger.setLevel("DEBUG")
    for level in LEVELS:
        getattr(om.logger, level.lower())(f"{level.lower()} message")
    for level in LEVELS:
        df = om.logger.dataset.get(level=level)
        assert len(df) == 1, level
        assert df.msg[0] == f"{level.lower()} message"
        assert df.level[0] == level and df.logger[0] == "simple"
        assert df.text[0] != df.msg[0] and df.msg[0] in df.text[0]
    assert len(om.logger.dataset.get(level="QUIET")) == 0
    # the init record plus one row per level, in the order they were logged
    df = om.logger.dataset.get()
    assert list(df.level) == ["SYSTEM", *LEVELS]
    assert (df.level[0], df.levelno[0], df.logger[0], df.msg[0], df.text[0]) == \
        ("SYSTEM", 999, "system", "log init", "log init")


def test_simple_logger_level(om):
    om.logger.reset()
    om.logger.setLevel("INFO")
    assert om.logger.level == "INFO"
    om.logger.debug("debug message")
    om.logger.info("info message")
    assert len(om.logger.dataset.get(level="DEBUG")) == 0
    assert len(om.logger.dataset.get(level="INFO")) == 1
    # WARNING is above INFO's threshold, so it is kept
    om.logger.warning("warning message")
    assert len(om.logger.dataset.get(level="WARNING")) == 1


def test_simple_logger_quiet(om):
    om.logger.reset()
    om.logger.setLevel("INFO")
    om.logger.info("info message")
    om.logger.setLevel("QUIET")
    assert om.logger.level == "QUIET"
    om.logger.error("error message")
    om.logger.critical("critical message")
    om.logger.debug("debug message")
    assert len(om.logger.dataset.get(level="INFO")) == 1
    assert len(om.logger.dataset.get(level="DEBUG")) == 0
    assert len(om.logger.dataset.get(level="ERROR")) == 0
    assert len(om.logger.dataset.get(level="CRITICAL")) == 0
    # an explicit QUIET record is the one thing QUIET lets through (omega-ml §1.4)
    om.logger.log("QUIET", "quiet message")
    quiet = om.logger.dataset.get(level="QUIET")
    assert list(quiet.msg) == ["quiet message"] and list(quiet.levelno) == [0]


def test_python_logger_capture_root(om, restore_python_loggers):
    om.logger.reset()
    root = logging.getLogger("root")
    assert root is logging.getLogger()
    root.setLevel(logging.DEBUG)
    messages = {"INFO": "info message", "ERROR": "error message", "WARNING": "warning message",
                "DEBUG": "debug message"}
    with om.logger.capture(root, level="DEBUG"):
        for level, msg in messages.items():
            root.log(logging.getLevelName(level), msg)
    df = om.logger.dataset.get()
    assert len(df) == 5  # 4 + init
    assert list(df.logger) == ["system", "root", "root", "root", "root"]
    for level, msg in messages.items():
        rows = om.logger.dataset.get(filter=dict(level=level, logger="root"))
        assert len(rows) == 1, level
        assert rows.msg[0] == msg
        assert msg in rows.text[0]
        # python records keep python's level numbers and omega-ml's OMEGA_LOG_FORMAT
        assert rows.levelno[0] == logging.getLevelName(level)
        assert f" - root - {level} - {msg}" in rows.text[0]
    # the handler is gone after the block
    root.info("after the block")
    assert len(om.logger.dataset.get()) == 5


def test_named_simplelogger(om):
    from omegaml_otel._internal.compat.logger import SimpleLogger

    om.logger.reset()
    foo = om.logger.getLogger("foo")
    assert isinstance(foo, SimpleLogger) and foo is not om.logger
    assert foo.name == "foo" and foo.name != om.logger.name
    foo.setLevel("info")
    assert foo.level == "INFO"
    foo.info("foo")
    df = om.logger.dataset.get(level="INFO")
    assert len(df) == 1
    assert df.logger[0] == "foo" and df.msg[0] == "foo" and df.levelno[0] == 4
    try:
        om.logger.name = "myname"
        assert om.logger.name == "myname"
        om.logger.info("foo")
        df = om.logger.dataset.get(filter=dict(level="INFO", logger="myname"))
        assert len(df) == 1
        assert df.logger[0] == "myname"
        assert len(om.logger.dataset.get(level="INFO")) == 2
    finally:
        om.logger.name = "simple"


def test_python_logger_capture(om, restore_python_loggers):
    om.logger.reset()
    logger = logging.getLogger("mytestlogger")
    logger.setLevel(logging.INFO)
    logger.info("outside before")
    assert len(om.logger.dataset.get(level="INFO")) == 0
    with om.logger.capture(logger):
        logger.info("inside")
    df = om.logger.dataset.get(level="INFO")
    assert len(df) == 1
    assert (df.logger[0], df.msg[0], df.levelno[0]) == ("mytestlogger", "inside", 20)
    logger.info("outside after")
    assert len(om.logger.dataset.get(level="INFO")) == 1


# -- levels, text, columns ------------------------------------------------------------------------------------------
def test_levelno_numbers(om):
    om.logger.reset()
    om.logger.setLevel("DEBUG")
    assert list(om.logger.levels) == ["QUIET", "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]
    for level in om.logger.levels:
        om.logger.log(level, f"at {level}")
    df = om.logger.dataset.get()
    got = dict(zip(df.level, df.levelno))
    assert got == {"SYSTEM": 999, "QUIET": 0, "CRITICAL": 1, "ERROR": 2, "WARNING": 3, "INFO": 4, "DEBUG": 5}
    assert df.levelno.dtype == "int64"


def test_text_format_and_columns(om):
    from omegaml_otel.settings import settings

    om.logger.reset()
    before = utcnow()
    om.logger.info("hello text")
    after = utcnow()
    df = om.logger.dataset.get()
    assert list(df.columns) == COLUMNS
    assert list(df.index) == [0, 1]
    row = df.iloc[1]
    created = row.created
    assert isinstance(created, pd.Timestamp) and created.tzinfo is None  # naive UTC
    assert pd.Timestamp(before) - timedelta(milliseconds=1) <= created <= pd.Timestamp(after) + timedelta(
        milliseconds=1)
    # omega-ml's '{created} {level} {message}' with str(datetime) of the naive UTC time
    assert row.text == f"{created.strftime('%Y-%m-%d %H:%M:%S.%f')} INFO hello text"
    assert row.hostname == settings().hostname and row.hostname
    assert (row.level, row.levelno, row.logger, row.msg) == ("INFO", 4, "simple", "hello text")
    assert pd.api.types.is_datetime64_any_dtype(df.created)


def test_show(om):
    om.logger.reset()
    for i in range(5):
        om.logger.info(f"show {i}")
    df = om.logger.show(latest=3)
    assert list(df.msg) == ["show 2", "show 3", "show 4"]
    assert list(om.logger.show(latest=2, reverse=True).msg) == ["show 4", "show 3"]
    assert list(om.logger.show(latest=1, columns=["msg", "levelno"]).columns) == ["msg", "levelno"]


# -- filters ------------------------------------------------------------------------------------------------------
def test_filter_dict_and_keywords(om):
    om.logger.reset()
    om.logger.setLevel("DEBUG")
    other = om.logger.getLogger("other")
    other.setLevel("DEBUG")
    om.logger.info("simple info")
    om.logger.error("simple error")
    other.info("other info")
    other.debug("other debug")
    assert list(om.logger.dataset.get(filter=dict(level="INFO", logger="other")).msg) == ["other info"]
    assert list(om.logger.dataset.get(level="INFO", logger="simple").msg) == ["simple info"]
    assert len(om.logger.dataset.get(logger="other")) == 2
    # level names are matched case-insensitively, as setLevel accepts them
    assert list(om.logger.dataset.get(level="error").msg) == ["simple error"]
    assert list(om.logger.dataset.get(level__in=["ERROR", "DEBUG"]).msg) == ["simple error", "other debug"]
    assert list(om.logger.dataset.get(msg__contains="info").msg) == ["simple info", "other info"]
    assert list(om.logger.dataset.get(msg__startswith="other").msg) == ["other info", "other debug"]
    assert list(om.logger.dataset.get(logger__ne="other", levelno__lt=999).msg) == ["simple info", "simple error"]
    assert list(om.logger.dataset.get(levelno__gte=5).level) == ["SYSTEM", "DEBUG"]
    assert list(om.logger.dataset.get(levelno__in=[2, 5]).msg) == ["simple error", "other debug"]
    assert len(om.logger.dataset.get(msg__contains="nothing like this")) == 0
    from omegaml_otel.settings import settings
    assert len(om.logger.dataset.get(hostname=settings().hostname)) == 5
    assert len(om.logger.dataset.get(hostname="no-such-host")) == 0


def test_time_filters(om):
    om.logger.reset()
    om.logger.info("first")
    time.sleep(2.0)
    middle = utcnow()
    om.logger.info("second")
    get = om.logger.dataset.get
    # relative times first, while 'second' is less than a second old and 'first' more than two
    assert list(get(since=timedelta(seconds=1)).msg) == ["second"]
    assert list(get(since="1s").msg) == ["second"]
    # end adds a timedelta (omega-ml's rule): until 1 s ago
    assert list(get(end=-timedelta(seconds=1)).msg) == ["log init", "first"]
    # timedeltas and '5m'-style offsets mean 'that long ago'
    assert list(get(since=timedelta(minutes=5)).msg) == ["log init", "first", "second"]
    assert list(get(since="5m").msg) == ["log init", "first", "second"]
    assert list(get(created__gte="5m").msg) == ["log init", "first", "second"]
    # end='5m' is 5 minutes from now: everything so far
    assert list(get(end="5m").msg) == ["log init", "first", "second"]
    # datetimes (naive UTC)
    assert list(get(created__gte=middle).msg) == ["second"]
    assert list(get(created__lt=middle).msg) == ["log init", "first"]
    assert list(get(since=middle).msg) == ["second"]
    assert list(get(end=middle).msg) == ["log init", "first"]
    # timezone-aware datetimes are converted to UTC
    aware = middle.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=5)))
    assert list(get(since=aware).msg) == ["second"]
    # ISO strings
    assert list(get(since=middle.isoformat()).msg) == ["second"]
    assert len(get(since=utcnow() + timedelta(minutes=1))) == 0
    assert list(get(since=middle, end=utcnow(), msg="second").msg) == ["second"]


def test_extra_columns(om):
    from omegaml_otel.settings import settings

    om.logger.reset()
    om.logger.info("with extras")
    df = om.logger.dataset.get(extra=True)
    assert list(df.columns) == COLUMNS + EXTRA
    row = df.iloc[-1]
    assert row.msg == "with extras"
    assert row.userid == settings().userid
    assert not row.taskid  # logged outside any task
    assert row.service.startswith("omegaml-")
    only = om.logger.dataset.get(extra=["userid"])
    assert list(only.columns) == COLUMNS + ["userid"]
    assert list(om.logger.dataset.get().columns) == COLUMNS
    assert len(om.logger.dataset.get(userid=settings().userid)) == 2
    assert len(om.logger.dataset.get(userid="nobody-at-all")) == 0


def test_extra_columns_of_task_records(worker, om):
    om.logger.reset()
    om.runtime.mode(logging=True)
    result = om.runtime.ping(wait=False)
    result.get(timeout=30)
    df = om.logger.dataset.get(extra=True, taskid=result.id)
    assert len(df) == 4
    assert set(df.logger) == {"simple", "celery", "omegaml", "root"}
    assert set(df.taskid) == {result.id}
    # every record of the task belongs to the task's trace, and carries a span id
    assert df.trace_id.nunique() == 1 and len(df.trace_id[0]) == 32
    assert all(len(s) == 16 for s in df.span_id)
    assert set(df.service) == {"omegaml-worker"}
    spans = om.telemetry.spans(attributes={"messaging.message.id": result.id},
                               SpanName="run/omegaml.tasks.omega_ping")
    assert len(spans) == 1
    assert df.trace_id[0] == spans.TraceId[0]
    assert set(df.span_id) == {spans.SpanId[0]}

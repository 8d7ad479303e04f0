"""The seed page's logging examples and omega-ml's task-logging tests, against a real prefork worker."""
from __future__ import annotations

import pytest

COLUMNS = ["level", "levelno", "logger", "msg", "text", "hostname", "created"]


def test_seed_task_logging(worker, om):
    om.logger.reset()
    om.runtime.mode(logging=True)
    result = om.runtime.ping(fox="bar")
    df = om.logger.dataset.get()
    assert list(df.columns) == COLUMNS
    rows = list(zip(df.level, df.levelno, df.logger))
    assert rows == [("SYSTEM", 999, "system"), ("INFO", 4, "simple"), ("INFO", 20, "celery"),
                    ("INFO", 20, "omegaml"), ("INFO", 20, "root")]
    assert df.msg[0] == "log init" and df.text[0] == "log init"
    assert df.msg[1].startswith("omega log: running ping task {'message': 'ping return message'")
    assert df.msg[2].startswith("python log: running ping task")
    assert df.msg[3].startswith("package log: running ping task")
    assert df.msg[4].startswith("print log: running ping task")
    # simple logger: '{created} {level} {message}'; python records: '%(asctime)s - %(name)s - %(levelname)s - ...'
    assert df.text[1] == f"{df.created[1].floor('us').to_pydatetime().isoformat(sep=' ')[:26]} INFO {df.msg[1]}"
    assert " - celery - INFO - python log: running ping task" in df.text[2]
    assert " - root - INFO - print log: running ping task" in df.text[4]
    assert df.text[2][19] == "," and df.text[2][:4].isdigit()
    assert result["kwargs"] == {"fox": "bar"} and result["message"] == "ping return message"
    assert result["worker"].startswith("omtel")
    assert df.created.is_monotonic_increasing
    assert set(df.hostname) == {df.hostname[0]} and df.hostname[0]


def test_seed_named_logger_across_processes(worker, om, tmp_path):
    import subprocess
    import sys

    om.logger.reset()
    subprocess.run([sys.executable, "-c", "import omegaml_otel as om; "
                    "om.logger.getLogger('mylogger').info('some message')"], check=True, timeout=60)
    df = om.logger.dataset.get(logger="mylogger")
    assert len(df) == 1
    assert (df.level[0], df.levelno[0], df.logger[0], df.msg[0]) == ("INFO", 4, "mylogger", "some message")
    assert df.text[0].endswith(" INFO some message")


@pytest.mark.parametrize("mode, level, expected", [
    (False, "INFO", 0), (True, "INFO", 4), ("celery", "INFO", 3), (("celery", "DEBUG"), "DEBUG", 3),
    ("warning", "WARNING", 4),  # unlike omega-ml, a level word, not a logger name
])
def test_task_logging_modes(worker, om, mode, level, expected):
    om.logger.reset()
    om.runtime.mode(logging=mode)
    om.runtime.ping(fox="bar", logging=False)
    assert len(om.logger.dataset.get(level=level)) == expected


def test_celery_debug_mode_total_rows(worker, om):
    om.logger.reset()
    om.runtime.mode(logging=("celery", "DEBUG")).ping(fox="bar")
    df = om.logger.dataset.get()
    assert len(df) == 4
    assert list(df.logger) == ["system", "simple", "celery", "celery"]
    assert list(df.levelno) == [999, 5, 10, 10]


@pytest.mark.parametrize("level, has_traceback", [("INFO", False), ("DEBUG", True)])
def test_task_exception_is_logged(worker, om, level, has_traceback):
    om.logger.reset()
    om.runtime.mode(logging=("celery", level))
    with pytest.raises(RuntimeError, match="intentional exception"):
        om.runtime.ping(exception=True)
    errors = om.logger.dataset.get(level="ERROR")
    assert len(errors) == 1
    assert errors.logger[0] == "celery"
    assert ("Traceback" in errors.msg[0]) is has_traceback


def test_local_mode_runs_in_process(om):
    om.logger.reset()
    om.runtime.mode(local=True, logging=True)
    result = om.runtime.ping(fox="bar")
    assert result["kwargs"] == {"fox": "bar"}
    assert len(om.logger.dataset.get(level="INFO")) == 4
    om.runtime.mode(logging=("celery", "DEBUG"))
    om.logger.reset()
    om.runtime.ping()
    assert len(om.logger.dataset.get(level="DEBUG")) == 3

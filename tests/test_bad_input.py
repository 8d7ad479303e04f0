"""Bad input gets a clear error naming the fix; odd input is stored faithfully; telemetry never breaks a task."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

SIMPLE_LEVELS = ["QUIET", "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


def run_script(code: str, env_update: dict, timeout: float = 60) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line prefixed 'RESULT ' that is returned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    env.update(env_update)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1][len("RESULT "):]) if lines else {}
    return proc, result


# -- unknown levels --------------------------------------------------------------------------------------------
def test_set_unknown_level(om):
    with pytest.raises(ValueError) as info:
        om.logger.setLevel("LOUD")
    msg = str(info.value)
    assert "LOUD" in msg and all(level in msg for level in SIMPLE_LEVELS)
    assert om.logger.level == "INFO"  # unchanged


def test_log_unknown_level(om):
    om.logger.reset()
    with pytest.raises(ValueError) as info:
        om.logger.log("LOUD", "too loud")
    msg = str(info.value)
    assert "LOUD" in msg and all(level in msg for level in SIMPLE_LEVELS)
    with pytest.raises(ValueError, match="INFO"):
        om.logger.log(20, "a number is not a level name")
    assert len(om.logger.dataset.get(msg="too loud")) == 0


def test_runtime_mode_unknown_level(om):
    before = dict(om.runtime.task_kwargs)
    with pytest.raises(ValueError) as info:
        om.runtime.mode(logging=("celery", "LOUD"))
    msg = str(info.value)
    assert "LOUD" in msg
    assert all(level in msg for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    assert om.runtime.task_kwargs == before  # the bad mode was not taken
    with pytest.raises(ValueError, match="logging="):
        om.runtime.mode(logging=("celery", "INFO", "extra"))
    with pytest.raises(ValueError, match="logging="):
        om.runtime.mode(logging=42)


# -- odd messages ----------------------------------------------------------------------------------------------
def test_non_string_messages_are_stored_as_str(om):
    om.logger.reset()
    om.logger.info({"a": 1})
    om.logger.info(12345)
    om.logger.info(None)
    om.logger.info(["x", 2])
    df = om.logger.dataset.get(level="INFO")
    assert list(df.msg) == ["{'a': 1}", "12345", "None", "['x', 2]"]
    assert all(isinstance(m, str) for m in df.msg)
    assert df.text[1].endswith(" INFO 12345")


def test_ten_megabyte_message(om):
    om.logger.reset()
    big = "x" * 10_000_000
    om.logger.info(big + "END")
    df = om.logger.dataset.get(level="INFO")
    assert len(df) == 1
    assert len(df.msg[0]) == 10_000_003 and df.msg[0] == big + "END"
    assert df.text[0].endswith(" INFO " + big + "END")


def test_unicode_and_control_characters(om):
    om.logger.reset()
    odd = "tab\tnull\x00 quote' \"dq\" ünïcødé ✓ \U0001F600 newline\nend"
    om.logger.info(odd)
    om.logger.info("lone surrogate \udcff here")
    df = om.logger.dataset.get(level="INFO")
    assert df.msg[0] == odd
    assert df.msg[1] == "lone surrogate \\udcff here"


# -- odd output inside worker tasks ----------------------------------------------------------------------------
def test_print_bytes_on_worker(worker, om):
    result = om.runtime.task("tests.print_bytes").delay()
    assert result.get(timeout=30) == "ok"
    logs = om.telemetry.logs(attributes={"celery.task_id": result.id})
    bodies = list(logs.Body)
    assert "raw \\xff\\xfe bytes" in bodies
    assert "after raw bytes" in bodies
    assert bodies.index("raw \\xff\\xfe bytes") < bodies.index("after raw bytes")
    streamed = logs[logs.Body.isin(["raw \\xff\\xfe bytes", "after raw bytes"])]
    assert set(a.get("log.iostream") for a in streamed.LogAttributes) == {"stdout"}


def test_print_bytes_with_logging_mode(worker, om):
    om.logger.reset()
    om.runtime.mode(logging=True)
    result = om.runtime.task("tests.print_bytes").delay()
    assert result.get(timeout=30) == "ok"
    df = om.logger.dataset.get(taskid=result.id)
    assert list(df.msg) == ["raw \\xff\\xfe bytes", "after raw bytes"]
    assert set(df.logger) == {"root"}


def test_log_objects_on_worker(worker, om):
    result = om.runtime.task("tests.log_objects").delay()
    assert result.get(timeout=30) == "ok"
    logs = om.telemetry.logs(attributes={"celery.task_id": result.id}, ScopeName="objects")
    bodies = list(logs.Body)
    assert "{'a': 1}" in bodies and "12345" in bodies
    bad = [b for b in bodies if b.startswith("bad format %d")]
    assert len(bad) == 1 and "not a number" in bad[0]
    assert set(logs.SeverityText) == {"WARNING"}
    # the task itself succeeded
    assert result.state == "SUCCESS"


def test_log_big_on_worker(worker, om):
    size = 2_000_000
    result = om.runtime.task("tests.log_big").delay(size)
    assert result.get(timeout=60) == size
    logs = om.telemetry.logs(attributes={"celery.task_id": result.id}, ScopeName="big")
    assert len(logs) == 1
    assert len(logs.Body.iloc[0]) == size and set(logs.Body.iloc[0]) == {"x"}


# -- a store that cannot be written ----------------------------------------------------------------------------
UNWRITABLE_LOGGER = """
    import json
    import omegaml_otel as om
    from omegaml_otel._internal.stores import StoreError
    out = {}
    for step, call in (("info", lambda: om.logger.info("x")), ("get", lambda: om.logger.dataset.get())):
        try:
            call()
            out[step] = "ok"
        except Exception as exc:
            out[step] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    print("RESULT " + json.dumps(out), flush=True)
"""


def test_unwritable_home_gives_store_error():
    proc, out = run_script(UNWRITABLE_LOGGER, {"OMTEL_HOME": "/proc/omtel-nope"})
    assert proc.returncode == 0, proc.stderr
    # reading must fail with the package's StoreError naming the setting to change
    assert out["get"].startswith("omegaml_otel.errors.StoreError: "), out
    assert "OMTEL_HOME" in out["get"] and "/proc/omtel-nope" in out["get"]
    # logging either works (buffered) or fails the same clear way; never a bare sqlite/OS error
    assert out["info"] == "ok" or (out["info"].startswith("omegaml_otel.errors.StoreError: ")
                                   and "OMTEL_HOME" in out["info"]), out
    assert "sqlite3.OperationalError" not in out["get"] and "Traceback" not in out["get"]


UNWRITABLE_PING = """
    import json
    import omegaml_otel as om
    out = {}
    try:
        om.runtime.mode(local=True, logging=True)
        out["mode"] = "ok"
    except Exception as exc:
        out["mode"] = f"{type(exc).__name__}: {exc}"
    try:
        out["ping"] = om.runtime.ping(fox="bar")
    except Exception as exc:
        out["ping"] = f"{type(exc).__name__}: {exc}"
    print("RESULT " + json.dumps(out), flush=True)
"""


def test_unwritable_store_never_breaks_a_task(tmp_path):
    proc, out = run_script(UNWRITABLE_PING, {"OMTEL_HOME": str(tmp_path / "home"),
                                             "OMTEL_STORE": "sqlite:////proc/omtel-nope/telemetry.sqlite"})
    assert proc.returncode == 0, proc.stderr
    assert out, proc.stderr
    assert out["mode"] == "ok", out
    assert isinstance(out["ping"], dict), out
    assert out["ping"]["kwargs"] == {"fox": "bar"} and out["ping"]["message"] == "ping return message"
    # what could not be stored is reported, naming the store
    assert "omtel-nope" in proc.stderr


# -- malformed filters -----------------------------------------------------------------------------------------
def test_misspelt_field(om):
    with pytest.raises(ValueError) as info:
        om.logger.dataset.get(levle="INFO")
    msg = str(info.value)
    assert "levle" in msg and "level" in msg.replace("levle", "") and "logger" in msg


def test_unknown_operator(om):
    with pytest.raises(ValueError) as info:
        om.logger.dataset.get(level__foo=1)
    msg = str(info.value)
    assert "foo" in msg and "level__foo" in msg
    assert all(op in msg for op in ("eq", "in", "contains", "startswith", "gte"))


def test_bad_since(om):
    with pytest.raises(ValueError) as info:
        om.logger.dataset.get(since="yesterday-ish")
    msg = str(info.value)
    assert "yesterday-ish" in msg and "since" in msg and "5h" in msg
    with pytest.raises(ValueError, match="end="):
        om.logger.dataset.get(end="tomorrow-ish")
    with pytest.raises(ValueError, match="created__gte"):
        om.logger.dataset.get(created__gte="soon")
    with pytest.raises(ValueError, match="5h"):
        om.telemetry.logs(since="yesterday-ish")


def test_in_needs_a_list(om):
    with pytest.raises(ValueError) as info:
        om.logger.dataset.get(level__in="INFO")
    msg = str(info.value)
    assert "level__in" in msg and "list" in msg
    with pytest.raises(ValueError, match="list"):
        om.logger.dataset.get(levelno__in=4)


def test_bad_extra_and_filter_dict(om):
    with pytest.raises(ValueError, match="userid"):
        om.logger.dataset.get(extra=["nosuch"])
    with pytest.raises(ValueError, match="levle"):
        om.logger.dataset.get(filter=dict(levle="INFO"))


def test_native_reader_bad_filters(om):
    with pytest.raises(ValueError) as info:
        om.telemetry.logs(Bodyy="x")
    assert "Bodyy" in str(info.value) and "Body" in str(info.value).replace("Bodyy", "")
    with pytest.raises(ValueError, match="startswith"):
        om.telemetry.spans(SpanName__like="run/%")
    with pytest.raises(ValueError, match="quotes"):
        om.telemetry.logs(attributes={'a"b': "x"})


# -- no worker -------------------------------------------------------------------------------------------------
NO_WORKER = """
    import json, time
    import omegaml_otel as om
    from omegaml_otel.errors import NoWorkerError
    t0 = time.monotonic()
    out = {}
    try:
        om.runtime.ping(timeout=1)
        out["error"] = None
    except Exception as exc:
        out["error"] = type(exc).__name__
        out["message"] = str(exc)
        out["is_timeout"] = isinstance(exc, TimeoutError)
        out["is_noworker"] = isinstance(exc, NoWorkerError)
    out["elapsed"] = time.monotonic() - t0
    print("RESULT " + json.dumps(out), flush=True)
"""


def test_ping_without_worker(tmp_path):
    t0 = time.monotonic()
    proc, out = run_script(NO_WORKER, {"OMTEL_HOME": str(tmp_path / "empty-home")}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out["error"] == "NoWorkerError", out
    assert out["is_timeout"] and out["is_noworker"]
    assert "omtel worker" in out["message"]
    assert "mode(local=True)" in out["message"]
    assert out["elapsed"] < 5, out
    assert time.monotonic() - t0 < 30


# -- the embedded broker -------------------------------------------------------------------------------------------
MANY_PINGS = """
    import json, time
    import omegaml_otel as om
    from omegaml_otel.worker import worker_process
    out = {"done": 0}
    with worker_process(concurrency=2) as proc:
        t0 = time.monotonic()
        try:
            for i in range(1500):
                om.runtime.ping(timeout=5)
                out["done"] += 1
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        out["worker_alive"] = proc.poll() is None
        out["elapsed"] = time.monotonic() - t0
    print("RESULT " + json.dumps(out), flush=True)
"""


def test_worker_survives_many_sequential_tasks(tmp_path):
    """Task after task on the embedded filesystem broker: the worker must never read a half-written message.

    (kombu's filesystem transport creates the message file and then writes it; a worker polling at 10 ms can read
    it empty, and the JSONDecodeError is 'Unrecoverable' - the worker exits. Runs in its own OMTEL_HOME so that a
    crash does not take the session's worker with it.)
    """
    proc, out = run_script(MANY_PINGS, {"OMTEL_HOME": str(tmp_path / "home"), "OMTEL_IMPORTS": "worker_tasks"},
                           timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.get("error") is None and out["done"] == 1500, out
    assert out["worker_alive"], out

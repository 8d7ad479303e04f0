"""Secrets never reach the store: task kwargs, Celery's own records, experiment events, jobs, logging extras, URLs
in messages and span attributes, with a real worker and the raw text of the SQLite file. Also: OMTEL_SCRUB=false,
OMTEL_SCRUB_PATTERNS and bad values of both; and what extra= and odd messages can (not) do to a stored record."""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from opentelemetry import trace

from omegaml_otel._internal.runtimes.client import wait_for

pytestmark = pytest.mark.slow

#: unique to this session, so rows of other tests cannot make the check pass or fail
SECRET = f"hunter2-{uuid.uuid4().hex[:12]}"
MARK = "[Scrubbed due to {}]"


def _raw_rows(home, table: str, since_ns: int = 0) -> list[str]:
    """Every row of ``table`` (written at or after ``since_ns``) as text, read with sqlite3, not the package."""
    con = sqlite3.connect(home / "telemetry.sqlite", timeout=30)
    try:
        return [repr(row) for row in con.execute(f"SELECT * FROM {table} WHERE Timestamp >= ?", (since_ns,))]
    finally:
        con.close()


def _wait_for_rows(home, needles: list[str], timeout: float = 20) -> list[str]:
    """The worker logs Celery's 'succeeded' record after the result is published: wait until it is written."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _raw_rows(home, "otel_logs")
        missing = [n for n in needles if not any(n in r for r in rows)]
        if not missing or time.monotonic() > deadline:
            assert not missing, f"never stored: {missing}"
            return rows
        time.sleep(0.2)


def test_no_secret_reaches_the_store(worker, om, omtel_home):
    t0 = time.time_ns()
    om.logger.reset()
    om.runtime.mode(logging=True)  # the ping then also logs its kwargs through om.logger, logging and print
    plain = om.runtime.ping(password=SECRET, api_key=SECRET, fox="bar", wait=False)
    echoed = wait_for(plain, 30)
    assert echoed["kwargs"]["password"] == SECRET  # the task and its result are untouched: only telemetry is
    name = f"scrub-{uuid.uuid4().hex[:8]}"
    with om.runtime.experiment(name) as exp:
        tracked = om.runtime.ping(token=SECRET, fox="bar", wait=False)
        wait_for(tracked, 30)
        exp.log_param("api_key", SECRET)
        exp.log_artifact({"db": {"password": SECRET}, "rows": 3}, "config")
    om.jobs.put("print('job got a secret of', len(db_password), 'characters')\n", "scrub-job")
    job = om.runtime.job("scrub-job").run(db_password=SECRET)
    wait_for(job, 60)
    om.logger.info(f"connecting to postgresql://admin:{SECRET}@db:5432/otel")
    with om.logger.capture("scrubtest"):
        logging.getLogger("scrubtest").warning("retry redis://:%s@cache:6379/0", SECRET,
                                               extra={"password": SECRET, "auth": {"token": SECRET}, "fox": "bar"})
    with trace.get_tracer("scrubtest").start_as_current_span("login", attributes={"db.password": SECRET}) as span:
        span.add_event("connect", {"url": f"https://user:{SECRET}@example.com/x"})
    om.telemetry.spans(SpanName="login")  # this process's records are written before a read
    task_ids = [plain.id, tracked.id, job.id]
    logs = _wait_for_rows(omtel_home, [f"[{tid}] succeeded" for tid in task_ids])
    traces = _raw_rows(omtel_home, "otel_traces")

    # nothing anywhere in either table holds the secret, nor any row written by this test the word hunter2
    assert not [r for r in logs + traces if SECRET in r]
    assert not [r for r in _raw_rows(omtel_home, "otel_logs", t0) + _raw_rows(omtel_home, "otel_traces", t0)
                if "hunter2" in r]

    # ... and the records are there, with markers where the secrets were
    def rows_with(*parts):
        return [r for r in logs if all(p in r for p in parts)]

    received = rows_with(f"[{plain.id}] received")  # Celery's own record; its `data` carries the kwargs repr
    assert received and MARK.format("password") in received[0] and MARK.format("api_key") in received[0]
    succeeded = rows_with(f"[{plain.id}] succeeded")[0]  # the body echoes the kwargs
    assert MARK.format("password") in succeeded and "'fox': 'bar'" in succeeded
    assert rows_with("python log: running ping task", MARK.format("password"))  # logging mode: the task's own logs
    assert rows_with(f"postgresql://admin:{MARK.format('URL password')}@db:5432/otel")
    assert rows_with(f"retry redis://:{MARK.format('URL password')}@cache:6379/0", MARK.format("auth"), '"fox"')
    assert rows_with(f"[{job.id}] received", MARK.format("password"))
    assert rows_with(f"job got a secret of {len(SECRET)} characters")
    data = exp.data()
    call = data[data.event == "task_call"].iloc[0]
    assert call.value == {"args": [], "kwargs": {"token": MARK.format("token"), "fox": "bar"}}
    param = data[data.event == "param"].iloc[0]
    assert (param.key, param.value) == ("api_key", MARK.format("api_key"))
    artifact = data[data.event == "artifact"].iloc[0]
    assert json.dumps(artifact.value).count(MARK.format("password")) == 1 and SECRET not in json.dumps(artifact.value)
    span_row = [r for r in traces if "'login'" in r]
    assert span_row and MARK.format("password") in span_row[0] and MARK.format("URL password") in span_row[0]


def test_extra_cannot_forge_and_an_unprintable_message_is_kept(worker, om):
    """In a job on the worker: extra= keys of the package are renamed, a message whose __str__ raises is kept."""
    om.runtime.mode(logging=False)
    om.jobs.put(textwrap.dedent("""
        import logging

        class Broken:
            def __str__(self):
                raise ValueError('no text')

        log = logging.getLogger('forger')
        log.warning('forged', extra={'omegaml.levelno': 999, 'celery.task_id': 'fake', 'mine': 1})
        log.warning(Broken())
        print('still running')
    """), "forger")
    job = om.runtime.job("forger").run()
    wait_for(job, 60)
    logs = om.telemetry.logs(attributes={"celery.task_id": job.id})
    by_body = {row.Body: row.LogAttributes for row in logs.itertuples()}
    forged = by_body["forged"]
    assert forged["celery.task_id"] == job.id and "omegaml.levelno" not in forged
    assert (forged["extra.celery.task_id"], forged["extra.omegaml.levelno"], forged["mine"]) == ("fake", "999", "1")
    assert "<unprintable Broken object: ValueError in str()> ()" in by_body
    assert "still running" in by_body


# -- settings: opt-out, extra patterns, bad values (each in a fresh interpreter with its own environment) ----------
def _run(code: str, tmp_path, **env_update) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(OMTEL_HOME=str(tmp_path / "home"), **env_update)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)


_LOG_AND_READ = f"""
    import logging, json
    import omegaml_otel as om
    om.logger.info('login password={SECRET}')
    with om.logger.capture('x'):
        logging.getLogger('x').warning('pay iban=DE89370400440532013000', extra={{'iban': 'DE89', 'api_key': 'k'}})
    rows = om.telemetry.logs(ScopeName__in=['simple', 'x'])
    print('RESULT ' + json.dumps([[r.Body, r.LogAttributes] for r in rows.itertuples()]))
"""


def _result(proc) -> list:
    assert proc.returncode == 0, proc.stderr
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])


def test_scrubbing_can_be_turned_off(tmp_path):
    rows = _result(_run(_LOG_AND_READ, tmp_path, OMTEL_SCRUB="false"))
    assert rows[0][0] == f"login password={SECRET}"
    assert rows[1][1]["api_key"] == "k"


def test_extra_patterns_add_to_the_defaults(tmp_path):
    rows = _result(_run(_LOG_AND_READ, tmp_path, OMTEL_SCRUB_PATTERNS=r"iban, ssn\b"))
    assert rows[0][0] == f"login password={MARK.format('password')}"
    body, attrs = rows[1]
    assert body == f"pay iban={MARK.format('iban')}"
    assert (attrs["iban"], attrs["api_key"]) == (MARK.format("iban"), MARK.format("api_key"))


@pytest.mark.parametrize("env, message", [
    ({"OMTEL_SCRUB_PATTERNS": "ok,bad("}, "OMTEL_SCRUB_PATTERNS: 'bad(' is not a regular expression"),
    ({"OMTEL_SCRUB": "maybe"}, "OMTEL_SCRUB='maybe' is not a yes/no value; use true or false"),
    ({"OMTEL_MAX_LINE": "10"}, "OMTEL_MAX_LINE='10': give a whole number of at least 80"),
])
def test_bad_settings_name_the_fix(tmp_path, env, message):
    proc = _run("import omegaml_otel as om; om.logger.info('x')", tmp_path, **env)
    assert proc.returncode != 0
    assert "ConfigurationError" in proc.stderr and message in proc.stderr

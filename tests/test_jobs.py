"""Jobs: om.jobs stores scripts and notebooks; om.runtime.job(name).run() runs them on a real worker, notebooks in a
real Jupyter kernel, and their print and logging output become log records of the task."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from omegaml_otel._internal.runtimes.client import wait_for
from omegaml_otel._internal.runtimes.jobs import JobError, JobStore

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "jobs"


def _notebook(*sources: str) -> dict:
    return new_notebook(cells=[new_markdown_cell("a test notebook"), *map(new_code_cell, sources)])


def _task_logs(om, task_id: str):
    return om.telemetry.logs(attributes={"celery.task_id": task_id})


def test_store_put_list_get_drop(tmp_path):
    store = JobStore(tmp_path / "jobs")
    assert store.list() == []
    assert store.put(EXAMPLES / "testcpu.ipynb", "testcpu") == "testcpu"
    assert store.put(str(EXAMPLES / "testcpu.py"), "scripts/testcpu.py") == "scripts/testcpu"
    assert store.put("print('hello')\n", "hello") == "hello"
    assert store.put(_notebook("print(1)"), "nbobj") == "nbobj"
    assert store.list() == ["hello", "nbobj", "scripts/testcpu", "testcpu"]
    assert store.kind("testcpu") == "ipynb" and store.kind("testcpu.ipynb") == "ipynb"
    assert store.kind("scripts/testcpu") == "py" and store.kind("hello") == "py"
    assert "np.random.rand(1000, 1000)" in "".join(json.loads(store.get("testcpu"))["cells"][2]["source"])
    assert store.get("scripts/testcpu") == (EXAMPLES / "testcpu.py").read_text()
    assert store.get("hello") == "print('hello')\n"
    # same name, other kind: replaced, not kept twice
    store.put(_notebook("print(2)"), "hello")
    assert store.kind("hello") == "ipynb" and store.list().count("hello") == 1
    assert store.drop("hello") is True and "hello" not in store.list()
    assert store.drop("hello", force=True) is False
    with pytest.raises(KeyError, match=r"om\.jobs\.list\(\)"):
        store.get("hello")


def test_store_bad_input(tmp_path):
    store = JobStore(tmp_path / "jobs")
    with pytest.raises(ValueError, match="no such file"):
        store.put(str(tmp_path / "missing.py"), "x")
    (tmp_path / "data.txt").write_text("print(1)")
    with pytest.raises(ValueError, match="unknown kind of job '.txt'"):
        store.put(tmp_path / "data.txt", "x")
    with pytest.raises(ValueError, match="not valid Python"):
        store.put("def broken(:\n", "x")
    with pytest.raises(ValueError, match="not a Jupyter notebook"):
        store.put('{"no": "cells"}', "x")
    with pytest.raises(ValueError, match="job name"):
        store.put("print(1)\n", "../escape")
    assert store.list() == []


def test_unknown_job_name(om):
    with pytest.raises(KeyError, match=r"no job named 'nosuchjob'.*om\.jobs\.list\(\)"):
        om.runtime.job("nosuchjob")


def test_script_job_on_worker(worker, om):
    om.jobs.put(EXAMPLES / "testcpu.py", "testcpu-script")
    assert "testcpu-script" in om.jobs.list()
    result = om.runtime.job("testcpu-script").run()
    value = wait_for(result, 60)
    assert value["job"] == "testcpu-script" and value["kind"] == "py" and value["status"] == "OK"
    assert "result shape (1000, 1000)" in value["outputs"][0]
    logs = _task_logs(om, result.id)
    printed = logs[logs.ScopeName == "stdout"]
    assert list(printed.Body) == ["result shape (1000, 1000)"]
    assert printed.LogAttributes.iloc[0]["log.iostream"] == "stdout"
    assert printed.LogAttributes.iloc[0]["job.name"] == "testcpu-script"
    logged = logs[logs.ScopeName == "testcpu"]
    assert len(logged) == 1 and logged.SeverityText.iloc[0] == "WARNING"
    assert logged.Body.iloc[0].startswith("testcpu: ") and "matmuls of 1000x1000" in logged.Body.iloc[0]


def test_notebook_job_on_worker(worker, om):
    om.jobs.put(str(EXAMPLES / "testcpu.ipynb"), "testcpu")
    result = om.runtime.job("testcpu").run(timeout=60)
    value = wait_for(result, 90)
    assert (value["job"], value["kind"], value["status"], value["cells"]) == ("testcpu", "ipynb", "OK", 3)
    assert any("result shape (1000, 1000)" in text for text in value["outputs"])
    logs = _task_logs(om, result.id)
    lines = {(row.ScopeName, row.Body): row.LogAttributes for row in logs.itertuples()}
    printed = lines[("stdout", "result shape (1000, 1000)")]
    assert printed["log.iostream"] == "stdout" and printed["notebook.cell"] == "2"
    assert printed["celery.task_name"] == "omegaml.notebook.tasks.run_omegaml_job"
    # Celery's own "Task ... succeeded in" record repeats the job's return value, outputs included; whether the
    # export thread has stored it yet when this reads (it is logged after the result is sent) is a matter of timing
    warned = [(scope, body, attrs) for (scope, body), attrs in lines.items()
              if "matmuls of 1000x1000" in body and scope != "celery.app.trace"]
    assert len(warned) == 1, logs[["ScopeName", "Body"]]
    scope, body, attrs = warned[0]
    assert scope == "stderr" and attrs["log.iostream"] == "stderr" and attrs["notebook.cell"] == "3"
    assert body.startswith("testcpu: ")


def test_failing_notebook_fails_the_task(worker, om):
    om.jobs.put(_notebook("print('before the error')", "raise ValueError('intentional notebook error')",
                          "print('never printed')"), "failing")
    result = om.runtime.job("failing").run()
    with pytest.raises(JobError, match=r"(?s)cell 2.*ValueError: intentional notebook error"):
        wait_for(result, 60)
    assert result.state == "FAILURE"
    bodies = list(_task_logs(om, result.id).Body)
    assert "before the error" in bodies and "never printed" not in bodies
    assert om.runtime.ping(timeout=30)["message"] == "ping return message"


def test_failing_script_fails_the_task(worker, om):
    om.jobs.put("print('step one')\n1 / 0\n", "failing-script")
    result = om.runtime.job("failing-script").run()
    with pytest.raises(JobError, match=r"(?s)ZeroDivisionError: division by zero.*line 2"):
        wait_for(result, 60)
    assert "step one" in list(_task_logs(om, result.id).Body)


def test_notebook_job_with_variables(worker, om):
    om.jobs.put(_notebook("print(f'hello {who}')"), "greet")
    result = om.runtime.job("greet").run(who="world")
    value = wait_for(result, 60)
    assert value["outputs"] == ["hello world\n"] and value["cells"] == 1
    logs = _task_logs(om, result.id)
    row = logs[logs.Body == "hello world"]
    assert len(row) == 1 and row.LogAttributes.iloc[0]["notebook.cell"] == "1"


def test_notebook_output_in_logging_mode(worker, om):
    om.logger.reset()
    om.runtime.mode(logging=True)
    om.jobs.put(_notebook("print('notebook says hello')",
                          "import logging; logging.getLogger('nb').warning('notebook warns')"), "chatty")
    wait_for(om.runtime.job("chatty").run(), 60)
    df = om.logger.dataset.get()
    printed = df[df.msg == "notebook says hello"]
    assert len(printed) == 1 and printed.logger.iloc[0] == "root" and printed.level.iloc[0] == "INFO"
    assert len(df[df.msg == "notebook warns"]) == 1


def test_notebook_progress_output_keeps_the_latest_state_per_cell(worker, om):
    """tqdm in a notebook: many carriage-return updates without a newline become one record holding what a terminal
    shows last, of the cell that wrote them; an unterminated line still ends with its cell (issue 9)."""
    progress = "import sys\nfor i in range(3000):\n    sys.stdout.write(f'\\rstep {i + 1}/3000')\n"
    om.jobs.put(_notebook(progress + "print()", "print('tail without newline', end='')"), "progress")
    result = om.runtime.job("progress").run()
    wait_for(result, 60)
    logs = _task_logs(om, result.id)
    stdout = logs[logs.ScopeName == "stdout"]
    assert list(stdout.Body) == ["step 3000/3000", "tail without newline"], stdout.Body.tolist()
    assert [attrs["notebook.cell"] for attrs in stdout.LogAttributes] == ["1", "2"]

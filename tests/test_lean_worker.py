"""Lean workers: capture and export never load pandas, numpy, pyarrow and the other heavy readers' packages.

A pool child that ran a ping with logging on and a profiled experiment task has none of them loaded, nor has the
worker's main process; ``import omegaml_otel``, ``omtel --help``, the ``omtel worker`` imports and the entry points
that ``opentelemetry-instrument`` loads stay without them, and reading (``om.logger.dataset.get()``) still works,
loading pandas only then.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from omegaml_otel._internal.runtimes.client import wait_for
from omegaml_otel._internal.stores.base import to_ns
from omegaml_otel.tasks import PING
from omegaml_otel.worker import worker_process

QUEUE = "lean"
#: shared objects of the heavy packages, as they appear in /proc/<pid>/maps of a process that imported them
HEAVY_LIBRARIES = ("/numpy/", "/pandas/", "/pyarrow/", "/matplotlib/", "/chdb/", "libarrow")


def _mapped_heavy_libraries(pid: int) -> list[str]:
    paths = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    return sorted(p for p in paths if any(h in p for h in HEAVY_LIBRARIES))


@pytest.mark.slow
def test_a_pool_child_runs_logging_and_profiling_without_heavy_modules(om, omtel_home):
    env = {**os.environ, "OMTEL_IMPORTS": "lean_tasks"}
    with worker_process(concurrency=1, queue=QUEUE, env=env) as proc:
        om.logger.reset()
        om.runtime.mode(logging=True)
        ping = wait_for(om.runtime.task(PING).apply_async(kwargs={"lean": 1}, queue=QUEUE), 10)
        om.runtime.mode(logging=False)
        with om.runtime.experiment("lean-worker", provider="profiling") as exp:
            tracked = wait_for(om.runtime.task("tests.heavy_modules").apply_async(queue=QUEUE), 20)
        after = wait_for(om.runtime.task("tests.heavy_modules").apply_async(queue=QUEUE), 10)
        main_libraries = _mapped_heavy_libraries(proc.pid)
        child_libraries = _mapped_heavy_libraries(after["pid"])
    assert ping["kwargs"] == {"lean": 1}
    assert tracked["pid"] == after["pid"]  # one pool child ran both, after the ping
    assert tracked["heavy"] == [] and after["heavy"] == []
    # it wrote the ping's records and the run's samples through the main process, never opening the store
    assert after["relaying"] is True and after["opened_store"] is False
    assert child_libraries == [] and main_libraries == []
    # what the lean child wrote reads back as before: the ping's records and the run's profile samples
    messages = om.logger.dataset.get().msg.tolist()
    assert any("running ping task" in m and "'lean': 1" in m for m in messages), messages
    data = exp.data()
    assert {"task_call", "task_success", "profile"} <= set(data.event)
    assert {"cpu_load", "memory_load"} <= set(data[data.event == "profile"].key)


_CLIENT = """
import contextlib, io, json, sys
from lean_tasks import HEAVY

def heavy():
    return sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))

import omegaml_otel as om
from omegaml_otel.cli import main
with contextlib.redirect_stdout(io.StringIO()) as help_text:
    try:
        main(["--help"])
    except SystemExit:
        pass
after_help = heavy()
import omegaml_otel.instrumentation, omegaml_otel._internal.export.store  # opentelemetry-instrument's entry points
from omegaml_otel.worker import run_worker  # what `omtel worker` imports
from omegaml_otel._internal.runtimes.app import celery_app
celery_app()
om.runtime.mode(logging=True)
om.logger.info("a lean client logs")
before_reading = heavy()
messages = om.logger.dataset.get().msg.tolist()
print(json.dumps({"help": "usage: omtel" in help_text.getvalue(), "after_help": after_help,
                  "before_reading": before_reading, "after_reading": heavy(), "messages": messages}))
"""


def test_the_client_loads_pandas_only_to_read(tmp_path):
    env = {**os.environ, "OMTEL_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_CLIENT)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.splitlines()[-1])
    assert found["help"] and found["after_help"] == []
    assert found["before_reading"] == []
    assert "a lean client logs" in found["messages"]
    assert "pandas" in found["after_reading"]  # reading is what loads it
    assert not set(found["after_reading"]) & {"matplotlib", "clickhouse_connect", "chdb", "nbclient"}  # not for logs


@pytest.mark.parametrize("value", [
    datetime(2026, 11, 30, 8, 15, 1, 123456),
    datetime(1969, 7, 20, 20, 17, 40, 1),
    datetime(2026, 11, 30, 9, 15, 1, 5, tzinfo=timezone(timedelta(hours=1))),
    datetime(2026, 11, 30, 8, 15, 1, tzinfo=timezone.utc),
])
def test_to_ns_without_pandas_agrees_with_pandas(value):
    ts = pd.Timestamp(value)
    expected = (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).as_unit("ns").value
    assert to_ns(value) == expected
    assert to_ns(pd.Timestamp(value) + pd.Timedelta(nanoseconds=7)) == expected + 7  # pandas' own keeps its ns


"""Every Celery pool keeps tasks that run at the same time apart: each task's log records and print output carry
that task's ids, and one task's logging mode (``om.runtime.mode(logging=...)``) changes nothing another task emits.

The end-to-end tests start a real ``omtel worker`` per pool on a queue of its own, with the tasks of
``tests/support/pool_tasks.py``; the first two tests check the same two properties in this process, with threads.
"""
from __future__ import annotations

import contextvars
import io
import logging
import os
import threading
import uuid
from collections import Counter
from datetime import datetime, timezone

import pytest

from omegaml_otel._internal.capture.context import record_attributes
from omegaml_otel._internal.capture.streams import StreamBridge
from omegaml_otel._internal.runtimes.tasklogging import task_logging
from omegaml_otel.conventions import DATASET, LOG_DATASET, TASK_ID
from omegaml_otel.worker import worker_process
from pool_tasks import LOGGER
from unit.helpers import finished, memory_logs

#: lines each task writes per channel
LINES = 20
#: every pool Celery has (gevent and eventlet come with the test extra)
POOLS = ["prefork", "threads", "solo", "gevent", "eventlet"]


def _in_threads(*targets) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)


def test_lines_written_at_the_same_time_stay_whole_and_carry_their_writer():
    provider, exporter = memory_logs()
    bridge = StreamBridge(io.StringIO(), "stdout", provider)
    turn = threading.Barrier(2)

    def writer(task_id: str):
        def run():
            record_attributes.set({TASK_ID: task_id})
            for i in range(50):
                bridge.write(f"{task_id} half ")
                turn.wait(5)  # both halves are pending at once: the second halves must not end the wrong line
                bridge.write(f"line {i}\n")
            bridge.write(f"{task_id} unterminated")
            turn.wait(5)
            bridge.flush_partial()  # what the end of a task does: only this writer's own unterminated line
        return run

    _in_threads(writer("task-a"), writer("task-b"))
    records = finished(exporter)
    assert len(records) == 102
    for rec in records:
        task_id = rec.attributes[TASK_ID]
        assert rec.body in {f"{task_id} unterminated"} | {f"{task_id} half line {i}" for i in range(50)}, rec.body
    assert Counter(r.attributes[TASK_ID] for r in records) == {"task-a": 51, "task-b": 51}


def test_a_task_logging_mode_holds_for_its_own_task_only(om):
    selected = logging.getLogger("pools.unit")
    child = logging.getLogger("pools.unit.child")
    before = (selected.level, list(selected.handlers), logging.getLogger().level, list(logging.getLogger().handlers))
    inside = threading.Barrier(3)
    seen: dict[str, tuple] = {}

    def task(name: str, spec):
        def run():
            with task_logging(spec):
                inside.wait(10)  # every task is inside its mode now
                seen[name] = (selected.isEnabledFor(logging.DEBUG), child.isEnabledFor(logging.DEBUG),
                              selected.isEnabledFor(logging.INFO), child.getEffectiveLevel())
                inside.wait(10)  # and stays there until every task has looked
        return run

    _in_threads(task("debug", ("pools.unit", "DEBUG")), task("warning", "warning"), task("off", False))
    assert seen["debug"] == (True, True, True, logging.DEBUG)
    assert seen["warning"] == (False, False, False, logging.WARNING)
    root_level = logging.getLogger().getEffectiveLevel()
    assert seen["off"] == (root_level <= logging.DEBUG, root_level <= logging.DEBUG, root_level <= logging.INFO,
                           root_level)
    # and nothing of the modes is left behind
    assert before == (selected.level, list(selected.handlers), logging.getLogger().level,
                      list(logging.getLogger().handlers))


def test_a_thread_the_task_starts_keeps_its_mode_only_when_started_in_its_context(om):
    """docs/logging.md, 'Worker pools': a plain thread runs outside the task; copy_context().run carries it over."""
    selected = logging.getLogger("pools.unit.thread")
    seen = {}

    def look(name: str):
        seen[name] = (selected.isEnabledFor(logging.DEBUG), record_attributes.get().get(TASK_ID))

    token = record_attributes.set({TASK_ID: "task-c"})
    try:
        with task_logging(("pools.unit.thread", "DEBUG")):
            task_context = contextvars.copy_context()  # taken in the task, run in the thread
            _in_threads(lambda: look("plain"), lambda: task_context.run(look, "copied"))
    finally:
        record_attributes.reset(token)
    assert seen["copied"] == (True, "task-c")
    assert seen["plain"] == (logging.getLogger().getEffectiveLevel() <= logging.DEBUG, None)


def _expected(marker: str, mode_debug: bool) -> set[str]:
    """What ``tests.pools.chatter`` leaves in the store under ('pools', 'DEBUG') or under 'warning' (root)."""
    kinds = ["print", "half line", "warning", "simple warning"]
    if mode_debug:
        kinds += ["debug", "info", "simple debug"]
    return {f"{marker} {kind} {i}" for kind in kinds for i in range(LINES)}


@pytest.mark.slow
@pytest.mark.parametrize("pool", POOLS)
def test_tasks_running_together_keep_their_ids_and_logging_modes(om, tmp_path, pool):
    queue = f"pools-{pool}"
    together = pool != "solo"  # solo runs one task after the other: the mode must still end with its task
    meet = tmp_path / "meet"
    meet.mkdir()
    debug_marker, warning_marker = f"debug-{uuid.uuid4().hex[:8]}", f"warning-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "OMTEL_IMPORTS": "pool_tasks"}
    since = datetime.now(timezone.utc)
    with open(tmp_path / "worker.log", "w") as log, \
            worker_process(concurrency=2 if together else 1, extra=[f"--pool={pool}"], env=env, queue=queue,
                           stderr=log, timeout=60):
        chatter = om.runtime.task("tests.pools.chatter")
        om.runtime.mode(logging=(LOGGER, "DEBUG"))
        debug_task = chatter.apply_async(args=(debug_marker, LINES, str(meet) if together else None), queue=queue)
        om.runtime.mode(logging="warning")
        warning_task = chatter.apply_async(args=(warning_marker, LINES, str(meet) if together else None),
                                           queue=queue)
        met = [debug_task.get(timeout=60), warning_task.get(timeout=60)]
    assert met == [True, True], f"the two tasks did not run at the same time in the {pool} pool"

    rows = om.telemetry.logs(since=since)
    for marker, task, mode_debug in ((debug_marker, debug_task, True), (warning_marker, warning_task, False)):
        mine = rows[rows.Body.str.startswith(marker + " ")]
        bodies = Counter(mine.Body)
        assert set(bodies) == _expected(marker, mode_debug), (pool, sorted(set(bodies) ^ _expected(marker, mode_debug)))
        assert max(bodies.values()) == 1, [b for b, n in bodies.items() if n > 1]
        assert {a.get(TASK_ID) for a in mine.LogAttributes} == {task.id}, pool
        assert {a.get(DATASET) for a in mine.LogAttributes} == {LOG_DATASET}, pool
    joined = rows[rows.Body.str.contains(debug_marker) & rows.Body.str.contains(warning_marker)]
    assert joined.empty, list(joined.Body)

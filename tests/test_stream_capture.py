"""Progress bars and long lines on a real worker: ``\\r`` updates keep the line's latest state, in time linear in
the output; a line longer than OMTEL_MAX_LINE is split into records that say so. Runs as a job (a script on the
worker), whose print output goes through the worker's stream bridge like any task's."""
from __future__ import annotations

import textwrap
import time

import pytest

from omegaml_otel._internal.capture.streams import CONTINUED
from omegaml_otel._internal.runtimes.client import wait_for
from omegaml_otel.settings import settings

pytestmark = pytest.mark.slow

UPDATES = 40_000
#: the job's run time with the quadratic bridge was 17 s for 20,000 updates (70 s and more for these 40,000);
#: linear, it is well under a second of bridge work
BUDGET_S = 15

PROGRESS = textwrap.dedent(f"""
    import sys
    for i in range(1, {UPDATES} + 1):
        sys.stdout.write(f"\\rtraining {{i}}/{UPDATES} " + "#" * (i * 40 // {UPDATES}))
        sys.stdout.flush()
    sys.stdout.write("\\n")
    print("x" * {{size}} + "END")
    sys.stdout.write("unterminated last line")
""")


def _stdout(om, task_id: str) -> list[str]:
    logs = om.telemetry.logs(attributes={"celery.task_id": task_id})
    return list(logs[logs.ScopeName == "stdout"].Body)


@pytest.mark.parametrize("logging_mode", [False, True], ids=["root", "logging-mode"])
def test_progress_bar_and_long_line_on_worker(worker, om, logging_mode):
    n = settings().max_line  # the worker shares this session's settings
    size = 3 * n + 5
    om.runtime.mode(logging=logging_mode)
    om.logger.reset()
    om.jobs.put(PROGRESS.replace("{size}", str(size)), "progress")
    t0 = time.monotonic()
    job = om.runtime.job("progress").run()
    wait_for(job, 120)
    took = time.monotonic() - t0
    line = "x" * size + "END"
    expected = [f"training {UPDATES}/{UPDATES} " + "#" * 40,
                line[:n] + CONTINUED, line[n:2 * n] + CONTINUED, line[2 * n:3 * n] + CONTINUED, line[3 * n:],
                "unterminated last line"]
    if logging_mode:  # print output goes to the task's logger, into the log dataset
        assert list(om.logger.dataset.get(logger="root").msg) == expected
    else:
        assert _stdout(om, job.id) == expected
    assert took < BUDGET_S, f"{UPDATES:,} progress updates took {took:.1f}s"

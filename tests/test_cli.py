"""``omtel logs [-f]`` and ``omtel ping`` as a user runs them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

OMTEL = [sys.executable, "-m", "omegaml_otel.cli"]


def test_logs_prints_text(worker, om):
    om.logger.reset()
    om.runtime.mode(logging=True).ping(fox="bar")
    out = subprocess.run([*OMTEL, "logs"], capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "log init"
    assert " INFO omega log: running ping task" in lines[1]
    assert " - root - INFO - print log: running ping task" in lines[4]
    only = subprocess.run([*OMTEL, "logs", "--logger", "celery"], capture_output=True, text=True, timeout=60,
                          check=True).stdout.splitlines()
    assert len(only) == 1 and " - celery - INFO - python log" in only[0]


def test_logs_follow_shows_new_records(om):
    om.logger.reset()
    # Ctrl-C as in a terminal: a test run started in the background (`cmd &` in a script) inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler; the child gets the default back
    follow = subprocess.Popen([*OMTEL, "logs", "-f", "--interval", "0.1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"},
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(2)
        om.logger.getLogger("follower").info("arrived later")
        deadline = time.monotonic() + 20
        seen = []
        while time.monotonic() < deadline:
            line = follow.stdout.readline()
            seen.append(line)
            if "arrived later" in line:
                break
        assert any("INFO arrived later" in line for line in seen), seen
    finally:
        follow.send_signal(signal.SIGINT)
        try:
            follow.wait(30)
        except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps every thread on SIGABRT
            follow.send_signal(signal.SIGABRT)
            _, err = follow.communicate(timeout=10)
            raise AssertionError(f"omtel logs -f did not exit after SIGINT:\n{err[-5000:]}") from None


def test_ping(worker):
    out = subprocess.run([*OMTEL, "ping"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "'message': 'ping return message'" in out


def test_bad_filter_is_a_clear_error():
    run = subprocess.run([*OMTEL, "logs", "--since", "yesterday-ish"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "since='yesterday-ish' is not a time" in run.stderr

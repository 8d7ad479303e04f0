"""The store relay (stores/relay.py): a forked child writes through the process that forked it, with real forks.

Each scenario runs ``tests/support/relay_driver.py`` in a process of its own (a relay leaves a thread and fork
hooks behind, which this test process must not get), on a fresh embedded store. The faults are real: the relaying
process is killed (SIGKILL) or stopped (SIGSTOP), and an unwritable store is a file of random bytes.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from omegaml_otel._internal.stores import relay, schema

DRIVER = Path(__file__).parent / "support" / "relay_driver.py"


def run_driver(home: Path, scenario: str, *, parent_signal: signal.Signals | None = None) -> list[dict]:
    """Run a scenario; with ``parent_signal`` the relaying process gets it once it has forked (SIGKILL, SIGSTOP),
    and only then the child goes on."""
    out = home / f"{scenario}.jsonl"
    env = {**os.environ, "OMTEL_HOME": str(home), "OMTEL_RETENTION": "off"}
    env.pop("OMTEL_STORE", None)
    if parent_signal:
        (home / f"{scenario}.jsonl.wait").touch()
    proc = subprocess.Popen([sys.executable, str(DRIVER), scenario, str(out)], env=env)
    if parent_signal:
        wait_for_line(out, '"parent"')
        proc.send_signal(parent_signal)
        if parent_signal == signal.SIGKILL:
            proc.wait(10)
        (home / f"{scenario}.jsonl.wait").unlink()
        wait_for_line(out, '"wrote"')
        if parent_signal == signal.SIGSTOP:
            proc.send_signal(signal.SIGCONT)
    assert proc.wait(30) in (0, -signal.SIGKILL)
    return [json.loads(line) for line in out.read_text().splitlines()]


def wait_for_line(out: Path, text: str) -> None:
    deadline = time.monotonic() + 20
    while not (out.exists() and text in out.read_text()):
        assert time.monotonic() < deadline, f"no {text} line in {out}"
        time.sleep(0.02)


def bodies(home: Path) -> list[str]:
    with sqlite3.connect(home / "telemetry.sqlite") as con:
        return [b for (b,) in con.execute(f"SELECT Body FROM {schema.LOGS} ORDER BY Timestamp")]


def step(facts: list[dict], name: str) -> dict:
    return next(f for f in facts if f["step"] == name)


def test_a_forked_child_writes_and_looks_up_through_its_parent(tmp_path):
    facts = run_driver(tmp_path, "relayed")
    parent, forked, wrote = step(facts, "parent"), step(facts, "forked"), step(facts, "wrote")
    assert forked["pid"] == wrote["pid"] == parent["child"]
    assert forked["relayed"] and forked["default_is_relayed"]  # writers and the readers' lookups alike
    assert wrote["found"] is True and wrote["relaying"] is True
    assert wrote["files"] == 0  # the child never opened the store: the parent wrote and looked up for it
    assert bodies(tmp_path) == ["from the main process", "from the child (relayed)"]


def test_a_child_whose_parent_was_killed_writes_the_store_itself(tmp_path):
    facts = run_driver(tmp_path, "gone", parent_signal=signal.SIGKILL)
    forked, wrote = step(facts, "forked"), step(facts, "wrote")
    assert forked["relayed"] is True
    assert wrote["relaying"] is False and wrote["found"] is True
    assert wrote["files"] >= 1  # it opened the store once the pair was closed
    assert bodies(tmp_path) == ["from the main process", "from the child (gone)"]


def test_a_child_whose_parent_is_silent_writes_itself_within_its_bound_and_only_once(tmp_path):
    """The relaying process is stopped (SIGSTOP) while the child flushes under a 0.3 s bound: the child gives up
    after the bound and GRACE and writes the row itself; the stopped process, let go on, finds the request expired
    and does not write it a second time."""
    facts = run_driver(tmp_path, "silent", parent_signal=signal.SIGSTOP)
    wrote = step(facts, "wrote")
    assert wrote["relaying"] is False and wrote["found"] is True
    assert 0.3 + relay.GRACE <= wrote["took"] < 0.3 + relay.GRACE + 1.0
    assert bodies(tmp_path) == ["from the main process", "from the child (silent)"]


def test_a_process_the_child_forks_opens_its_own_store(tmp_path):
    facts = run_driver(tmp_path, "grandchild")
    grandchild, wrote = step(facts, "grandchild"), step(facts, "wrote")
    assert grandchild["relayed"] is False and grandchild["files"] >= 1
    assert wrote["relaying"] is True and wrote["files"] == 0  # the child itself still relays
    assert sorted(bodies(tmp_path)) == ["from the child (grandchild)", "from the grandchild",
                                       "from the main process"]


def test_a_write_the_parent_cannot_make_fails_in_the_child(tmp_path):
    """The store is a file of random bytes: the child's write raises the store's own error, as a write of its own
    would have (its export buffer then keeps the rows and retries), and the relay answers the next request too."""
    (tmp_path / "telemetry.sqlite").write_bytes(os.urandom(64 * 1024))
    wrote = step(run_driver(tmp_path, "refused"), "wrote")
    assert "not a database" in wrote["write_error"] and "not a database" in wrote["lookup_error"]
    assert wrote["relaying"] is True and wrote["files"] == 0  # an answered error is not a lost relay

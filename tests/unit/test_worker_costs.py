"""What a worker pays per task and per child, kept small (docs/performance.md, sections 12 and 13): the SQLite flush
before each task result sets its busy timeout once for a run of flushes, not twice per flush, while reads keep the
full wait; the WAL's checkpoints are made by a thread of the writing process, not by the flush; the ``system``
event's package list is read once before the pool forks, by a fast reader that gives the metadata parser's list;
pool children write the store through the worker's main process (stores/relay.py)."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from omegaml_otel._internal import deadline
from omegaml_otel._internal.capture import hardware
from omegaml_otel._internal.stores import open_store, schema
from omegaml_otel._internal.stores.sqlite import BUSY_TIMEOUT, INLINE_CHECKPOINT_PAGES

from .helpers import store_url


def test_flushes_under_one_bound_set_the_busy_timeout_once_and_reads_keep_the_full_wait(tmp_path):
    store = open_store(store_url(tmp_path))
    row = tuple([None] * len(schema.columns(schema.LOGS)))
    store.write(schema.LOGS, [row])
    statements: list[str] = []
    conn = store._connection()
    conn.set_trace_callback(statements.append)
    for _ in range(20):  # a flush before each task's result: each under the caller's OMTEL_FLUSH_TIMEOUT
        with deadline.within(1.0):
            store.write(schema.LOGS, [row])
    pragmas = [s for s in statements if "busy_timeout" in s]
    assert len(pragmas) == 1 and 900 <= int(pragmas[0].split("=")[1]) <= 1000
    assert statements.count("BEGIN IMMEDIATE") == 20
    statements.clear()
    full = int(BUSY_TIMEOUT * 1000)
    assert store.rows(schema.LOGS, columns=["Body"]) and statements[0] == f"PRAGMA busy_timeout={full}"
    assert store._connection().execute("PRAGMA busy_timeout").fetchone()[0] == full


def test_the_package_list_is_the_metadata_parsers():
    parsed = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    hardware._packages.cache_clear()
    assert list(hardware._packages()) == parsed and len(parsed) > 10


_POOL = """
import gc, json, os, sys, time, weakref
from billiard.pool import Pool
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from omegaml_otel._internal.capture import hardware
from omegaml_otel._internal.capture.celery import CeleryInstrumentor
from omegaml_otel._internal.stores import default_store, relay

class Node:
    pass

def child_state():
    store = default_store()
    return {"packages_read": hardware._packages.cache_info().misses, "relaying": getattr(store, "relaying", False),
            "frozen": gc.get_freeze_count() > 0}

instrumentor = CeleryInstrumentor()
instrumentor.instrument(tracer_provider=TracerProvider(), logger_provider=LoggerProvider(),
                        meter_provider=MeterProvider())
with Pool(processes=1) as pool:  # billiard's prefork pool, as Celery's prefork worker runs it
    child = pool.apply(child_state)
before = {"packages_read": hardware._packages.cache_info().misses, "relay": relay._relay is not None,
          "frozen": gc.get_freeze_count()}
# a child replaced more than a second after the last fork: what the parent made since is collected first, so that
# cyclic garbage is not frozen for good (automatic collection is off: only that collection can free it)
gc.disable()
with Pool(processes=1, maxtasksperchild=1) as pool:
    time.sleep(1.2)
    garbage = Node()
    garbage.itself = garbage
    freed = weakref.ref(garbage)
    del garbage
    pool.apply(child_state)  # the child leaves after this task and the pool forks another
    pool.apply(child_state)
gc.enable()
before["garbage_freed"] = freed() is None
instrumentor.uninstrument()
hardware._packages.cache_clear()
with Pool(processes=1) as pool:
    uninstrumented = pool.apply(child_state)
print(json.dumps({"parent": before, "child": child, "uninstrumented": uninstrumented,
                  "parent_after": hardware._packages.cache_info().misses,
                  "parent_frozen_after": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("relay", ["true", "false"])
def test_a_prefork_pool_reads_the_package_list_and_prepares_the_relay_before_it_forks(tmp_path, relay):
    """A real billiard pool in a process of its own (a relay leaves a thread behind): the main process read the
    package list once, both keep what they share frozen (gc.freeze), the child inherited the list (no read of its
    own) and writes the store through the main process unless OMTEL_STORE_RELAY=false; once uninstrumented, a pool
    forks as it did before."""
    env = {**os.environ, "OMTEL_HOME": str(tmp_path), "OMTEL_RETENTION": "off", "OMTEL_STORE_RELAY": relay}
    env.pop("OMTEL_STORE", None)
    out = subprocess.run([sys.executable, "-c", _POOL], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout.splitlines()[-1])
    relayed = relay == "true"
    # what the parent shares with its children stays out of both sides' collections, until it is uninstrumented
    assert facts["parent"]["frozen"] > 0 and facts["parent_frozen_after"] == 0
    assert facts["parent"] == {"packages_read": 1, "relay": relayed, "frozen": facts["parent"]["frozen"],
                               "garbage_freed": True}
    # the inherited cache's one read: the parent's
    assert facts["child"] == {"packages_read": 1, "relaying": relayed, "frozen": True}
    assert facts["uninstrumented"] == {"packages_read": 0, "relaying": False, "frozen": False}
    assert facts["parent_after"] == 0


def test_a_writing_process_checkpoints_the_wal_in_a_thread_of_its_own(tmp_path):
    checkpointers = lambda: {t for t in threading.enumerate() if t.name == "omtel-checkpoint"}  # noqa: E731
    others = checkpointers()  # other stores of this process (the session's own) have theirs
    store = open_store(store_url(tmp_path))
    rows = [tuple([None] * len(schema.columns(schema.LOGS)))] * 5
    wal = tmp_path / "t.sqlite-wal"
    for _ in range(600):  # about 2,000 WAL pages (8 MB) unless checkpoints let the WAL start over
        store.write(schema.LOGS, rows)
        time.sleep(0.002)  # flushes a few ms apart, as before task results: the thread catches up between them
    assert store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == INLINE_CHECKPOINT_PAGES
    ours = checkpointers() - others
    assert ours
    # the file keeps its largest size: had no thread checkpointed, the WAL would have grown to 8 MB (the inline
    # backstop is 4,000 pages); with it the WAL started over every 500 or so pages
    assert wal.stat().st_size < 4e6, f"the WAL grew to {wal.stat().st_size / 1e6:.1f} MB: nothing checkpointed it"
    store.close()
    deadline = time.monotonic() + 5
    while ours & checkpointers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not ours & checkpointers(), "closing the store did not end its checkpoint thread"

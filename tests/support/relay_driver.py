"""A process that relays its forked child's store writes (stores/relay.py), as a prefork worker's main process does.

Run as ``python relay_driver.py <scenario> <report file>`` with OMTEL_HOME set; the child writes one log row per
step and appends what it saw to the report file as JSON lines, which the test reads. Scenarios:

- ``relayed``: the child writes and looks a row up through this process;
- ``gone``: the child waits until the test has killed this process (SIGKILL), then writes;
- ``grandchild``: the child forks a process of its own, which writes;
- ``refused``: the store is not a database (the test made it so): the child reports the errors it got;
- ``silent``: the test stops this process (SIGSTOP) before the child writes under a bound of 0.3 s, and lets it go
  on (SIGCONT) once the child has written.
"""
from __future__ import annotations

import json
import os
import sys
import time

from omegaml_otel._internal import deadline
from omegaml_otel._internal.stores import Cond, StoreError, default_store, open_store, prepare_pool_child, schema
from omegaml_otel._internal.stores.relay import RelayedStore
from omegaml_otel.settings import settings


def row(body: str) -> tuple:
    values = dict.fromkeys(schema.columns(schema.LOGS), "")
    values.update(Timestamp=time.time_ns(), TraceFlags=0, SeverityNumber=9, Body=body, ResourceAttributes="{}",
                  ScopeAttributes="{}", LogAttributes="{}")
    return tuple(values[c] for c in schema.columns(schema.LOGS))


def store_files_open() -> int:
    """How many of this process's file descriptors are the store's files (the database, its WAL and index); the
    ``files`` reported are those beyond what the child inherited, i.e. what it opened itself."""
    path = settings().store_url.split("://", 1)[1]
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith(path) for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


def report(path: str, **facts) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), **facts}) + "\n")


def child(scenario: str, out: str) -> None:
    url = settings().store_url
    inherited = store_files_open()  # the parent's connection, whose descriptors a fork copies
    store = open_store(url)
    report(out, step="forked", relayed=isinstance(store, RelayedStore) and store.relaying,
           default_is_relayed=default_store() is store)
    if scenario in ("gone", "silent"):
        give_up = time.monotonic() + 30
        while os.path.exists(out + ".wait") and time.monotonic() < give_up:  # the test kills the parent, then
            time.sleep(0.02)                                                 # removes the file
    if scenario == "grandchild":
        pid = os.fork()
        if pid == 0:
            own = open_store(url)
            own.write(schema.LOGS, [row("from the grandchild")])
            report(out, step="grandchild", relayed=isinstance(own, RelayedStore), files=store_files_open() - inherited)
            os._exit(0)
        os.waitpid(pid, 0)
    body = f"from the child ({scenario})"
    if scenario == "refused":
        errors = {}
        for name, call in (("write_error", lambda: store.write(schema.LOGS, [row(body)])),
                           ("lookup_error", lambda: store.exists(schema.LOGS, conds=[Cond("Body", "eq", body)]))):
            try:
                call()
            except StoreError as exc:
                errors[name] = str(exc)
        report(out, step="wrote", relaying=store.relaying, files=store_files_open() - inherited, **errors)
        return
    started = time.monotonic()
    with deadline.within(0.3 if scenario == "silent" else 30):
        store.write(schema.LOGS, [row(body)])
    took = time.monotonic() - started
    found = store.exists(schema.LOGS, conds=[Cond("Body", "eq", body)])
    report(out, step="wrote", found=found, relaying=store.relaying, files=store_files_open() - inherited, took=took)


def main() -> None:
    scenario, out = sys.argv[1], sys.argv[2]
    if scenario != "refused":
        default_store().write(schema.LOGS, [row("from the main process")])  # the store exists before the fork
    prepare_pool_child()
    pid = os.fork()
    if pid == 0:
        try:
            child(scenario, out)
        finally:
            os._exit(0)
    report(out, step="parent", child=pid)
    os.waitpid(pid, 0)
    if scenario == "silent":
        time.sleep(0.5)  # the relay thread now reads the request the child gave up on


if __name__ == "__main__":
    main()

"""Real faults for the bad-day tests and benchmark: stores that cannot be written, collectors that refuse or hang.

Nothing here is a mock: a corrupt store is a file of random bytes, a locked store is held by a real sqlite3
connection with ``BEGIN EXCLUSIVE``, a refusing collector is a port nobody listens on, and a hanging collector is a
listening socket whose connections are never read.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OTLP_SIGNALS = ("OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_METRICS_EXPORTER")


def corrupt_store(home: Path) -> Path:
    """``home/telemetry.sqlite`` full of random bytes: SQLite refuses it ('file is not a database')."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "telemetry.sqlite"
    path.write_bytes(os.urandom(64 * 1024))
    return path


@contextmanager
def locked_store(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold the store's write lock, as another process writing a long transaction does (the caller is that other
    process: SQLite's locks are per connection)."""
    con = sqlite3.connect(path, isolation_level=None, timeout=30)
    con.execute("BEGIN EXCLUSIVE")
    try:
        yield con
    finally:
        con.execute("ROLLBACK")
        con.close()


def refusing_port() -> int:
    """A local port nobody listens on: a connection to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def hanging_listener() -> Iterator[int]:
    """A listening socket that accepts connections (in the kernel's backlog) and never reads or answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        yield s.getsockname()[1]


def otlp_env(port: int) -> dict[str, str]:
    """Every signal to an OTLP/HTTP collector on ``port`` of this machine."""
    return {**dict.fromkeys(OTLP_SIGNALS, "otlp"), "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}


def clean_env(**update: str) -> dict[str, str]:
    """This environment without any OMTEL_*/OTEL_* setting, plus ``update``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(update)
    return env


def run_script(code: str, env: dict[str, str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``code`` in a fresh interpreter; the JSON of its last line starting 'RESULT ' comes back with it."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return proc, json.loads(lines[-1][len("RESULT "):]) if lines else {}

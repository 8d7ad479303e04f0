"""Helpers shared by the benchmark scripts (no omegaml_otel import here: callers set OMTEL_HOME first)."""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
#: environment variables that would redirect a benchmark away from its own temporary embedded home
_FOREIGN = ("OMTEL_STORE", "OMTEL_BROKER", "OMTEL_RESULT_BACKEND", "OMTEL_IMPORTS", "OTEL_TRACES_EXPORTER",
            "OTEL_LOGS_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME",
            "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED")


def fresh_home(prefix: str) -> Path:
    """A new temporary OMTEL_HOME, set in os.environ (call before importing omegaml_otel)."""
    home = Path(tempfile.mkdtemp(prefix=f"omtel-bench-{prefix}-"))
    os.environ["OMTEL_HOME"] = str(home)
    for var in _FOREIGN:
        os.environ.pop(var, None)
    return home


def remove_home(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)


def pythonpath(*extra: Path | str) -> str:
    parts = [str(p) for p in extra] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def median(values) -> float:
    return statistics.median(values)


def pct(values, q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    if title:
        lines.append(title)
    for i, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def emit_result(name: str, metrics: dict) -> None:
    """The last line of every benchmark: machine-readable, collected by run_all.py."""
    print("RESULT " + json.dumps({"bench": name, **metrics}, default=float))
    sys.stdout.flush()


def verdict(value: float, target: float, higher_is_better: bool = False) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "meets target" if ok else "MISSES target"


#: the brokers a benchmark can run its workers on (--broker)
BROKERS = ("filesystem", "redis", "amqp")


@contextmanager
def broker_urls(broker: str, channels: int) -> Iterator[list[str | None]]:
    """One broker URL per worker: separate, empty channels on one server, removed afterwards; all None for the
    embedded broker, whose folder is under each worker's own OMTEL_HOME."""
    if broker == "filesystem":
        yield [None] * channels
    elif broker == "redis":
        import redis  # local: only this broker needs the client

        empty = [db for db in range(15, 0, -1) if redis.Redis(host="127.0.0.1", port=6379, db=db).dbsize() == 0]
        if len(empty) < channels:
            raise SystemExit(f"needs {channels} empty databases on the Redis server at "
                             "127.0.0.1:6379")
        try:
            yield [f"redis://127.0.0.1:6379/{db}" for db in empty[:channels]]
        finally:
            for db in empty[:channels]:
                redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
    else:
        hosts = [f"omtel-bench-{i}-{uuid.uuid4().hex[:8]}" for i in range(channels)]
        try:
            for vhost in hosts:
                _rabbitmqctl("add_vhost", vhost)
                _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            yield [f"amqp://guest:guest@127.0.0.1:5672/{vhost}" for vhost in hosts]
        finally:
            for vhost in hosts:
                subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


def _rabbitmqctl(*args: str) -> None:
    proc = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise SystemExit(f"rabbitmqctl {' '.join(args)}: {proc.stderr.strip()} (is RabbitMQ up?)")

"""The production path for tests: ``tests/support/chsink.py`` (chdb behind the ClickHouse HTTP protocol) fed by rotel.

``collector_path(folder)`` starts both and yields their addresses; ``exporting_env(...)`` is the environment of a
process that sends OTLP/HTTP to that rotel. Both are real processes; nothing here is simulated.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} is not listening on {port} after {timeout}s")
            time.sleep(0.05)


def stop(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    """SIGTERM (a warm shutdown for workers, a clean close for the sink), then kill after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass
class CollectorPath:
    sink: subprocess.Popen
    sink_port: int
    otlp_http_port: int
    folder: Path
    otlp_grpc_port: int

    @property
    def store_url(self) -> str:
        """The sink as a ``ClickHouseStore`` URL (the ordinary HTTP client)."""
        return f"clickhouse://127.0.0.1:{self.sink_port}/otel"

    def scalar(self, sql: str) -> str:
        """One value from the sink, over the ClickHouse HTTP protocol."""
        url = f"http://127.0.0.1:{self.sink_port}/?" + urllib.parse.urlencode({"query": sql})
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode().strip()


def exporting_env(home: Path, otlp_http_port: int, exporters: str = "otlp") -> dict:
    """A clean environment (no inherited OMTEL_/OTEL_/ROTEL_) whose processes export to rotel, every 100 ms."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_", "ROTEL_"))}
    env.update(OMTEL_HOME=str(home), OMTEL_IMPORTS="worker_tasks",
               OTEL_TRACES_EXPORTER=exporters, OTEL_LOGS_EXPORTER=exporters, OTEL_METRICS_EXPORTER=exporters,
               OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_http_port}",
               OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
               OTEL_BLRP_SCHEDULE_DELAY="100", OTEL_BSP_SCHEDULE_DELAY="100")
    return env


@contextmanager
def collector_path(folder: Path):
    """Start the sink (its chdb in ``folder/chdb``) and rotel exporting to it; stop both on exit."""
    from rotel import Config, Rotel

    sink_port, http_port, grpc_port = free_port(), free_port(), free_port()
    run = folder / "run"
    run.mkdir(parents=True, exist_ok=True)
    sink_log = open(run / "sink.log", "w")
    sink = subprocess.Popen([sys.executable, str(HERE / "chsink.py"), str(sink_port), str(folder / "chdb")],
                            stdout=sink_log, stderr=subprocess.STDOUT)
    rotel = None
    try:
        wait_listening(sink_port, 30, sink, "chsink")
        rotel = Rotel(enabled=True, otlp_http_endpoint=f"127.0.0.1:{http_port}",
                      otlp_grpc_endpoint=f"127.0.0.1:{grpc_port}", pid_file=str(run / "rotel.pid"),
                      log_file=str(run / "rotel.log"), batch_timeout="100ms",
                      exporter=Config.clickhouse_exporter(endpoint=f"http://127.0.0.1:{sink_port}",
                                                          compression="lz4", async_insert=False))
        rotel.start()
        wait_listening(http_port, 20, what="rotel")
        wait_listening(grpc_port, 20, what="rotel (gRPC)")
        yield CollectorPath(sink, sink_port, http_port, folder, grpc_port)
    finally:
        if rotel is not None:
            rotel.stop()
        stop(sink, 20)
        sink_log.close()

"""Tasks the test worker imports (OMTEL_IMPORTS=worker_tasks, tests/support on PYTHONPATH): loads and odd output."""
from __future__ import annotations

import ctypes
import logging
import os
import sys
import time

from celery import shared_task

from omegaml_otel.tasks import OmegaTask


@shared_task(name="tests.log_burst", base=OmegaTask)
def log_burst(n: int, name: str = "burst", delay: float = 0.0) -> int:
    log = logging.getLogger(name)
    for i in range(n):
        log.info("burst record %d", i)
        if delay:
            time.sleep(delay)
    return n


@shared_task(name="tests.print_bytes", base=OmegaTask)
def print_bytes() -> str:
    sys.stdout.buffer.write(b"raw \xff\xfe bytes\n")
    print("after raw bytes")
    return "ok"


@shared_task(name="tests.log_big", base=OmegaTask)
def log_big(size: int) -> int:
    logging.getLogger("big").warning("x" * size)
    return size


@shared_task(name="tests.log_objects", base=OmegaTask)
def log_objects() -> str:
    log = logging.getLogger("objects")
    log.warning({"a": 1})
    log.warning(12345)
    log.warning("bad format %d", "not a number")
    return "ok"


@shared_task(name="tests.crash_after_burst", base=OmegaTask)
def crash_after_burst(n: int, name: str, how: str, pause: float = 0.0) -> None:
    """Log ``n`` records, wait ``pause`` seconds, then end the pool child hard: ``exit`` is ``os._exit(1)``,
    ``segfault`` a real SIGSEGV in C code (reading address 0), after which no Python code of the process runs."""
    log = logging.getLogger(name)
    for i in range(n):
        log.info("crash burst %d", i)
    time.sleep(pause)
    if how == "exit":
        os._exit(1)
    ctypes.string_at(0)


@shared_task(name="tests.spin", base=OmegaTask)
def spin(seconds: float) -> dict:
    """Keep one core busy for ``seconds`` of wall time (profiling tests: a task whose own CPU is high), and say how
    much of a core it got: on a crowded machine that is less than all of one."""
    cpu0, start = time.process_time(), time.monotonic()
    while time.monotonic() < start + seconds:
        pass
    return {"cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.monotonic() - start}


@shared_task(name="tests.nap", base=OmegaTask)
def nap(seconds: float) -> float:
    """Sleep ``seconds`` (profiling tests: a task whose own CPU stays near zero while the host's may not)."""
    time.sleep(seconds)
    return seconds

"""Tasks the test worker imports (OMTEL_IMPORTS=worker_tasks, tests/support on PYTHONPATH): loads and odd output."""
from __future__ import annotations

import logging
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

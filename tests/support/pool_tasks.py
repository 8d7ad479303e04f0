"""Tasks of the pool tests (tests/test_pools.py): a worker started with OMTEL_IMPORTS=pool_tasks runs them."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from celery import shared_task

import omegaml_otel as om
from omegaml_otel.tasks import OmegaTask

#: the logger both tasks log to: a mode that selects it for one task must not change what the other emits
LOGGER = "pools"


@shared_task(name="tests.pools.chatter", base=OmegaTask)
def chatter(marker: str, lines: int, meet: str | None = None) -> bool:
    """Print, write half lines, and log at every level ``lines`` times, each text starting with ``marker``.

    ``meet``: a folder where the tasks that run together wait for each other first (one file each), so that they
    really overlap; returns whether they met (always True without ``meet``)."""
    met = _meet(Path(meet), marker) if meet else True
    log = logging.getLogger(LOGGER)
    for i in range(lines):
        print(f"{marker} print {i}")
        sys.stdout.write(f"{marker} half ")
        time.sleep(0.002)  # the other task writes in between: the two halves must still make one line
        sys.stdout.write(f"line {i}\n")
        log.debug(f"{marker} debug {i}")
        log.info(f"{marker} info {i}")
        log.warning(f"{marker} warning {i}")
        om.logger.debug(f"{marker} simple debug {i}")
        om.logger.warning(f"{marker} simple warning {i}")
    return met


def _meet(folder: Path, marker: str, timeout: float = 15) -> bool:
    (folder / marker).touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < 2:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

"""Tasks the benchmark worker imports (OMTEL_IMPORTS=bench_tasks, benchmarks/ on PYTHONPATH)."""
from __future__ import annotations

import logging
import os

from celery import shared_task

from omegaml_otel.tasks import OmegaTask


@shared_task(name="bench.log_burst", base=OmegaTask)
def log_burst(n: int, name: str = "bench.burst") -> dict:
    """Log ``n`` INFO records through Python logging (the worker's root-logger bridge stores them, or the task
    logging bridge when the client set ``om.runtime.mode(logging=True)``); returns the pool child's pid."""
    info = logging.getLogger(name).info
    for i in range(n):
        info("burst record %d of %s", i, name)
    return {"n": n, "pid": os.getpid(), **_buffer_state()}


def _buffer_state() -> dict:
    """Records this process's export buffers dropped so far, and records still queued (a collector's buffer is
    not flushed before the result is sent: it drains while the client waits for the rows)."""
    from omegaml_otel._internal.export.pipeline import current_pipeline

    t = current_pipeline()
    buffers = t.buffers.values() if t is not None else ()
    return {"dropped": sum(b.dropped for b in buffers), "pending": sum(b.pending() for b in buffers)}


@shared_task(name="bench.log_burst_profile", base=OmegaTask)
def log_burst_profile(n: int, name: str, path: str) -> dict:
    """``log_burst`` under cProfile in the pool child (stats written to ``path``), for investigating hot spots."""
    import cProfile

    prof = cProfile.Profile()
    out = prof.runcall(log_burst, n, name)
    prof.dump_stats(path)
    return out

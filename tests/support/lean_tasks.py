"""The probe task of tests/test_lean_worker.py (OMTEL_IMPORTS=lean_tasks): what a pool child has loaded."""
from __future__ import annotations

import os
import sys

from celery import shared_task

from omegaml_otel._internal.stores import default_store
from omegaml_otel.tasks import OmegaTask

#: what no capture or export path needs: loaded only by a task that uses it (a notebook job, a reader call)
HEAVY = ("pandas", "numpy", "pyarrow", "matplotlib", "clickhouse_connect", "chdb", "nbclient")


@shared_task(name="tests.heavy_modules", base=OmegaTask)
def heavy_modules() -> dict:
    """The heavy top-level modules this pool child has imported, its pid, and whether it writes the store through
    the worker's main process without having opened the store itself (stores/relay.py)."""
    store = default_store()
    return {"pid": os.getpid(), "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY)),
            "relaying": getattr(store, "relaying", False), "opened_store": getattr(store, "_direct", True) is not None}

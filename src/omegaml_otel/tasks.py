"""The task base class for tasks of your own that should behave like omega-ml's built-in ones.

``@app.task(base=OmegaTask)`` strips omega-ml's ``__``-prefixed system kwargs (``__logging``, ``__experiment``)
and applies the task logging mode a client chose with ``om.runtime.mode(logging=...)``.
"""
from __future__ import annotations

from omegaml_otel._internal.runtimes.tasks import PING, OmegaTask

__all__ = ["OmegaTask", "PING"]

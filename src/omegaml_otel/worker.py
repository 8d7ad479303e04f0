"""Running workers: ``run_worker`` is what ``omtel worker`` runs; ``worker_process`` starts one as a subprocess
(notebooks, scripts, tests) and stops it with a warm shutdown."""
from __future__ import annotations

from omegaml_otel._internal.runtimes.worker import run_worker, stop_process, worker_argv, worker_process

__all__ = ["run_worker", "stop_process", "worker_argv", "worker_process"]

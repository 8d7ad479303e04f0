"""The Celery app of the runtime, configured from settings.

The embedded default needs no server: the filesystem transport under ``OMTEL_HOME/broker`` and a file result
backend. It polls every 10 ms (``OMTEL_BROKER_POLLING``): at kombu's default of 1 s every task round trip takes about
a second; at 10 ms it took 12 to 14 ms when measured, for about 3 % of a core while the worker idles.
``OMTEL_BROKER`` switches to Redis or RabbitMQ.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from celery import Celery

from omegaml_otel._internal.secure import private_dir
from omegaml_otel.errors import ConfigurationError
from omegaml_otel.settings import Settings, settings


def celery_config(cfg: Settings) -> dict:
    conf = dict(
        broker_url=cfg.broker_url,
        result_backend=cfg.result_backend,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue="omegaml",
        result_expires=3600,
        imports=cfg.imports,
    )
    if cfg.broker_url == "filesystem://":
        folder = cfg.broker_folder
        _private_folders(cfg, [folder / sub for sub in ("queue", "processed", "control")] + [cfg.home / "results"])
        conf["broker_transport"] = "omegaml_otel._internal.runtimes.fstransport:Transport"
        conf["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"), "store_processed": False,
            "control_folder": str(folder / "control"),
            "polling_interval": cfg.broker_polling,
        }
    elif cfg.broker_url.startswith(("redis", "sqla", "memory")):
        conf["broker_transport_options"] = {"polling_interval": cfg.broker_polling}
    return conf


def _private_folders(cfg: Settings, folders: list[Path]) -> None:
    """Create the embedded broker's and results' folders, owner only (0700): whoever can drop a message file in the
    queue has a worker run it, jobs included; results hold what tasks return."""
    for folder in folders:
        try:
            private_dir(folder)
        except OSError as exc:
            raise ConfigurationError(
                f"OMTEL_HOME={str(cfg.home)!r}: cannot create {folder} ({exc.strerror or exc}); set OMTEL_HOME to a "
                "folder you can write, or OMTEL_BROKER to a broker server such as redis://host:6379/0") from None


@lru_cache(maxsize=1)
def celery_app() -> Celery:
    # the tasks, and the capture they bring, load with the app, not with its configuration: the benchmarks'
    # baseline (benchmarks/plain_app.py) builds a plain Celery app from celery_config() without OpenTelemetry
    from omegaml_otel._internal.runtimes import jobs, tasks

    app = Celery("omegaml")
    app.conf.update(celery_config(settings()))
    tasks.register(app)
    jobs.register(app)
    return app


def reset_app() -> None:
    celery_app.cache_clear()

"""A user's own Celery app. It knows nothing about omegaml-otel: run it under ``opentelemetry-instrument``.

The default broker is Celery's filesystem transport in ./celery-data (no server needed); set
CELERY_BROKER_URL (and CELERY_RESULT_BACKEND) to use Redis or RabbitMQ instead.
"""
import logging
import os
from pathlib import Path

from celery import Celery

DATA = Path(os.environ.get("THEIRAPP_DATA", Path(__file__).parent / "celery-data")).absolute()
BROKER = os.environ.get("CELERY_BROKER_URL", "filesystem://")

app = Celery("theirapp", broker=BROKER,
             backend=os.environ.get("CELERY_RESULT_BACKEND", f"file://{DATA / 'results'}"))
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                broker_connection_retry_on_startup=True)
if BROKER == "filesystem://":
    for sub in ("queue", "processed", "control", "results"):
        (DATA / sub).mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(DATA / "queue"), "data_folder_out": str(DATA / "queue"),
        "processed_folder": str(DATA / "processed"), "store_processed": False, "polling_interval": 0.05,
        "control_folder": str(DATA / "control"),
    }

log = logging.getLogger("theirapp")


@app.task(name="theirapp.add")
def add(x, y):
    log.info("adding %s and %s", x, y)
    print(f"the sum is {x + y}")
    return x + y

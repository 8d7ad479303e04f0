"""Someone else's Celery app: it knows nothing about omegaml-otel (used by test_autoinstrument)."""
import logging
import os

from celery import Celery

folder = os.environ["USERAPP_FOLDER"]
for sub in ("queue", "processed", "results", "control"):
    os.makedirs(os.path.join(folder, sub), exist_ok=True)

app = Celery("userapp", broker="filesystem://", backend=f"file://{folder}/results")
app.conf.update(
    broker_transport_options={"data_folder_in": f"{folder}/queue", "data_folder_out": f"{folder}/queue",
                              "processed_folder": f"{folder}/processed", "control_folder": f"{folder}/control",
                              "polling_interval": 0.01},
    task_serializer="json", result_serializer="json", accept_content=["json"],
    broker_connection_retry_on_startup=True,
)
log = logging.getLogger("userapp.tasks")


@app.task(name="userapp.add")
def add(x, y):
    log.info("adding %s and %s", x, y)
    print(f"sum is {x + y}")
    return x + y

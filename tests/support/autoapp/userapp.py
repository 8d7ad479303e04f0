"""Someone else's Celery app: it knows nothing about omegaml-otel (used by test_autoinstrument and test_distro).

``USERAPP_BROKER`` (a Redis URL) is its broker and result backend when set: kombu's filesystem transport can hand a
worker a message file that is still being written (kombu #1551), which tasks sent together under load hit.
"""
import logging
import os
import time

from celery import Celery

folder = os.environ["USERAPP_FOLDER"]
for sub in ("queue", "processed", "results", "control"):
    os.makedirs(os.path.join(folder, sub), exist_ok=True)

redis = os.environ.get("USERAPP_BROKER")
app = Celery("userapp", broker=redis or "filesystem://", backend=redis or f"file://{folder}/results")
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


@app.task(name="userapp.whoami")
def whoami(pause):
    """The pid of the pool child that ran it, after ``pause`` seconds (tasks sent together spread over the pool)."""
    time.sleep(pause)
    log.info("whoami")
    return os.getpid()


@app.task(name="userapp.burst")
def burst(count):
    """``count`` records in a tight loop: more than the SDK batch processors' queue of 2048 holds."""
    for i in range(count):
        log.info("burst %d", i)
    return count

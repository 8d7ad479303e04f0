"""Built-in tasks, under omega-ml's task names so that tracked keys match the documentation."""
from __future__ import annotations

import logging
import socket
from datetime import datetime

from celery import Celery, Task

from omegaml_otel._internal.capture.context import task_level
from omegaml_otel._internal.compat.logger import default_logger
from omegaml_otel._internal.runtimes.tasklogging import task_logging


class OmegaTask(Task):
    """Base class: strips omega-ml's ``__``-prefixed system kwargs and applies the task logging mode."""

    def __call__(self, *args, **kwargs):
        system = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("__")}
        with task_logging(system.get("__logging")):
            return super().__call__(*args, **kwargs)


#: omega-ml's name of the ping task
PING = "omegaml.tasks.omega_ping"


def register(app: Celery) -> None:
    @app.task(name=PING, base=OmegaTask, bind=True)
    def omega_ping(task, *args, **kwargs):
        """omega-ml's ping: echoes its arguments; logs one line through each channel when logging is on."""
        if kwargs.get("exception"):
            raise RuntimeError("intentional exception caused by exception=True kwarg")
        data = {
            "message": "ping return message",
            "time": datetime.now().isoformat(),
            "args": list(args),
            "kwargs": {k: v for k, v in kwargs.items() if k != "pure_python"},
            "worker": task.request.hostname or socket.gethostname(),
        }
        level = task_level.get()
        if level is not None:
            pylevel = logging.getLevelName(level)
            default_logger().log(level, f"omega log: running ping task {data}")
            logging.getLogger("celery").log(pylevel, f"python log: running ping task {data}")
            logging.getLogger("omegaml").log(pylevel, f"package log: running ping task {data}")
            print(f"print log: running ping task {data}")
        return data

"""A plain Celery app: the runtime's exact broker/backend configuration, no OpenTelemetry at all.

The baseline of bench_roundtrip.py. Started as::

    OMTEL_HOME=<its own folder> PYTHONPATH=benchmarks celery -A plain_app worker --pool=prefork --concurrency=2

``celery_config(settings())`` is the very dict the instrumented runtime's app gets (by default the filesystem broker
under ``$OMTEL_HOME/broker`` with 10 ms polling and ``file://`` results; with ``OMTEL_BROKER`` set, that Redis or
RabbitMQ broker and its result backend; json, queue ``omegaml``); importing ``omegaml_otel.settings`` and
``omegaml_otel._internal.runtimes.app`` loads no OpenTelemetry module, which ``bench.plain_otel_modules`` lets the
benchmark verify inside a pool child.

redis-py (7 and later) imports parts of the OpenTelemetry SDK itself, for its own optional metrics, which it leaves
off: so on Redis the plain side has OpenTelemetry modules too. What must never be loaded there is what would
instrument it, ``INSTRUMENTING``.
"""
from __future__ import annotations

import logging
import socket
import sys
from datetime import datetime

from celery import Celery

from omegaml_otel._internal.runtimes.app import celery_config
from omegaml_otel.settings import settings

#: modules whose presence would mean the plain side is instrumented: tracing, logging, exporters, instrumentors, ours
INSTRUMENTING = ("opentelemetry.sdk.trace", "opentelemetry.sdk._logs", "opentelemetry.exporter",
                 "opentelemetry.instrumentation", "omegaml_otel._internal.capture", "omegaml_otel._internal.export")

app = Celery("plain")
app.conf.update(celery_config(settings()))
app.conf.imports = ()


@app.task(name="omegaml.tasks.omega_ping", bind=True)
def omega_ping(task, *args, **kwargs):
    """Same result as the runtime's ping with logging off: a dict echoing the arguments. With ``task_logs=True``
    it also writes the four lines the runtime's ping writes with logging on, the plain way: three INFO records
    (the simple logger's stand-in and two Python loggers) and a print, which the worker's console handler and
    Celery's stdout redirection write to the worker log."""
    data = {
        "message": "ping return message",
        "time": datetime.now().isoformat(),
        "args": list(args),
        "kwargs": {k: v for k, v in kwargs.items() if k != "pure_python"},
        "worker": task.request.hostname or socket.gethostname(),
    }
    if kwargs.get("task_logs"):
        logging.getLogger("simple").info(f"omega log: running ping task {data}")
        logging.getLogger("celery").info(f"python log: running ping task {data}")
        logging.getLogger("omegaml").info(f"package log: running ping task {data}")
        print(f"print log: running ping task {data}")
    return data


@app.task(name="bench.plain_otel_modules")
def plain_otel_modules():
    """The instrumenting modules loaded in this pool child (the benchmark expects none)."""
    return instrumenting_modules()


def instrumenting_modules() -> list[str]:
    return sorted(m for m in sys.modules if m.startswith(INSTRUMENTING))

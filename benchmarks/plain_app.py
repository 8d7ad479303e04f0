"""A plain Celery app: the runtime's exact broker/backend configuration, no OpenTelemetry at all.

The baseline of bench_roundtrip.py. Started as::

    OMTEL_HOME=<its own folder> PYTHONPATH=benchmarks celery -A plain_app worker --pool=prefork --concurrency=2

``celery_config(settings())`` is the very dict the instrumented runtime's app gets (filesystem broker under
``$OMTEL_HOME/broker`` with 10 ms polling, ``file://`` results, json, queue ``omegaml``); importing
``omegaml_otel.settings`` and ``omegaml_otel._internal.runtimes.app`` loads no OpenTelemetry module, which
``bench.plain_otel_modules`` lets the benchmark verify inside a pool child.
"""
from __future__ import annotations

import socket
import sys
from datetime import datetime

from celery import Celery

from omegaml_otel._internal.runtimes.app import celery_config
from omegaml_otel.settings import settings

app = Celery("plain")
app.conf.update(celery_config(settings()))
app.conf.imports = ()


@app.task(name="omegaml.tasks.omega_ping", bind=True)
def omega_ping(task, *args, **kwargs):
    """Same result as the runtime's ping with logging off: a dict echoing the arguments."""
    return {
        "message": "ping return message",
        "time": datetime.now().isoformat(),
        "args": list(args),
        "kwargs": {k: v for k, v in kwargs.items() if k != "pure_python"},
        "worker": task.request.hostname or socket.gethostname(),
    }


@app.task(name="bench.plain_otel_modules")
def plain_otel_modules():
    """The OpenTelemetry modules loaded in this pool child (the benchmark expects none)."""
    return sorted(m for m in sys.modules if m.startswith("opentelemetry"))

"""``plain_app`` under the stock OpenTelemetry SDK, without this package: the middle side of bench_memory.py.

The setup the upstream instrumentation documents for prefork workers: in each pool child (``worker_process_init``)
a TracerProvider with a BatchSpanProcessor, a LoggerProvider with a BatchLogRecordProcessor and the SDK's
``LoggingHandler`` on the root logger, and ``opentelemetry-instrumentation-celery``'s ``CeleryInstrumentor``. The
exporters are the SDK's console exporters writing to ``os.devnull``: no network client is loaded, as none is in an
``omtel worker`` that writes its embedded store, so the two sides differ in what they instrument, not in transport
libraries. Started as::

    OMTEL_HOME=<folder> PYTHONPATH=benchmarks celery -A stock_otel_app worker --pool=prefork --concurrency=2
"""
from __future__ import annotations

import logging
import os

from celery.signals import worker_process_init
from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from plain_app import app

__all__ = ["app"]


@worker_process_init.connect(weak=False)
def instrument(**kwargs) -> None:
    """The stock setup in this process: a pool child (``worker_process_init``), or a client that sends tasks
    (``bench_roundtrip.py`` calls it directly, so that the client makes upstream's producer spans)."""
    devnull = open(os.devnull, "w")
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=devnull)))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(ConsoleLogRecordExporter(out=devnull)))
    set_logger_provider(logger_provider)
    logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))
    CeleryInstrumentor().instrument()

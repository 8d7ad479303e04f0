"""OTLP/HTTP exporters that give up when their caller does: one request per export, bounded by ``deadline``.

The SDK's HTTP client retries a refused or timed-out connection inside ``export()``, sleeping 1, 2, 4 … s until its
own timeout (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s). A pool child that exits with the collector down then waits that
long for every signal, and a warm shutdown outlasts Celery's grace period. Here the exporters' HTTP session turns a
connection error into an error the client does not retry, so the export fails at once and the ``ExportBuffer``
retries on its own back-off; and every request's timeout is capped by what its caller has left (a flush, the exit
budget). Answers of a live collector (a 429 or 503 with ``Retry-After``) are still retried by the client.
"""
from __future__ import annotations

import importlib

import requests

from omegaml_otel._internal import deadline
from omegaml_otel._internal.secure import mask_url
from omegaml_otel.errors import ExportFailed

_EXPORTERS = {
    "traces": ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    "logs": ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
    "metrics": ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
}
#: the SDK client's request timeout when it passes none
_DEFAULT_TIMEOUT = 10.0


class BoundedSession(requests.Session):
    """The exporters' session; ``last_error`` keeps why the last request failed, for the buffer's report."""

    def __init__(self):
        super().__init__()
        self.last_error: ExportFailed | None = None

    def request(self, method, url, *args, **kwargs):
        timeout = kwargs.get("timeout")
        left = deadline.remaining(timeout if isinstance(timeout, (int, float)) else _DEFAULT_TIMEOUT)
        if left <= 0:
            self.last_error = ExportFailed(f"no time was left to send to {mask_url(url)} (OMTEL_EXIT_TIMEOUT, "
                                           "OMTEL_FLUSH_TIMEOUT)")
            raise self.last_error
        kwargs["timeout"] = left
        shown = mask_url(url)  # an endpoint may carry credentials: never in a message
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.Timeout:
            self.last_error = ExportFailed(f"the collector at {shown} did not answer within {left:.1f} s")
            raise self.last_error from None
        except requests.RequestException as exc:
            reason = getattr(exc.args[0], "reason", exc) if exc.args else exc  # urllib3's cause, without the pool
            self.last_error = ExportFailed(f"cannot reach the collector at {shown}: {reason}")
            raise self.last_error from None
        self.last_error = None
        return response


def exporter(signal: str) -> tuple[object, BoundedSession]:
    """An OTLP/HTTP exporter for ``signal`` with a bounded session; it reads OTEL_EXPORTER_OTLP_* itself."""
    module, cls = _EXPORTERS[signal]
    session = BoundedSession()
    return getattr(importlib.import_module(module), cls)(session=session), session

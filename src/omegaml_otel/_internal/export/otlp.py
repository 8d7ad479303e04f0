"""OTLP exporters that give up when their caller does: one request per export, bounded by ``deadline``.

``exporter`` builds them for the protocol the settings give: ``http/protobuf`` here, ``grpc`` in ``otlp_grpc.py``
(bounded the same way, and safe across Celery's fork of its pool).

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
from omegaml_otel.errors import ConfigurationError, ExportFailed

#: the values of OTEL_EXPORTER_OTLP_PROTOCOL (and its per-signal variants) that omegaml-otel builds exporters for
PROTOCOLS = ("http/protobuf", "grpc")
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


def exporter(signal: str, protocol: str = "http/protobuf") -> tuple[object, object]:
    """An OTLP exporter for ``signal`` over ``protocol``, and what keeps why its last export failed (``last_error``):
    the HTTP exporter's bounded session, or the gRPC exporter itself. They read OTEL_EXPORTER_OTLP_* themselves."""
    variables = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL"
    if protocol == "grpc":
        try:
            # grpcio and the gRPC exporters are loaded only by a process that sends over gRPC
            from omegaml_otel._internal.export import otlp_grpc
        except ImportError as exc:
            raise ConfigurationError(
                f"OTLP {signal} over gRPC ({variables} = 'grpc') needs the gRPC exporter, which cannot be imported "
                f"({exc}): pip install opentelemetry-exporter-otlp-proto-grpc, or set {variables} to "
                "'http/protobuf'") from None
        made = otlp_grpc.exporter(signal)
        return made, made
    if protocol != "http/protobuf":
        raise ConfigurationError(f"{variables} is {protocol!r}: omegaml-otel sends OTLP as "
                                 f"{' or '.join(repr(p) for p in PROTOCOLS)}")
    module, cls = _EXPORTERS[signal]
    session = BoundedSession()
    return getattr(importlib.import_module(module), cls)(session=session), session

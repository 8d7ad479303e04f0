"""OTLP/gRPC exporters that give up when their caller does and never use a channel across a fork.

Imported only by a process that sends OTLP over gRPC (``otlp.exporter``): grpcio starts threads of its own, which
no other process should pay for.

Bounds, as for OTLP/HTTP (``otlp.py``): the SDK's gRPC exporter retries UNAVAILABLE and DEADLINE_EXCEEDED inside
``export()``, sleeping 1, 2, 4 … s until its timeout (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s), and gRPC itself waits
out a reconnect back-off of up to two minutes after a refused connection. Here a collector that cannot be reached or
does not answer in time fails the export at once (the ``ExportBuffer`` retries on its own back-off, over a new
channel), and the exporter's timeout, which bounds each call and its retries, is what its caller has left (a flush,
the exit budget). A live collector's other answers (RESOURCE_EXHAUSTED, or UNAVAILABLE with a retry delay) are still
retried by the SDK within that time.

Fork safety: Celery's worker exports its own log lines and then forks its pool, again whenever a child is recycled.
gRPC documents a fork after channels were made only with no call under way (and ``GRPC_ENABLE_FORK_SUPPORT``, a
setting of the whole process left to its owner), and a child must not use its parent's channel. So no channel
crosses a fork: it is closed before the fork, once the export under way is done (the export buffer's own fork hook
waits for that too), and every process opens its own at its first export.

This relies on the SDK mixin's ``_timeout`` (read once per export), ``_client`` (the stub it calls), ``_channel``
and ``_initialize_channel_and_stub`` (how it opens one); ``tests/test_distro.py`` exercises them against a real
collector, with the exporter release of the installed SDK.
"""
from __future__ import annotations

import os
import threading

import grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from omegaml_otel._internal import deadline
from omegaml_otel.errors import ExportFailed

#: how long a fork waits for an export of another thread (a metric reader's) before leaving the channel open
_FORK_WAIT = 1.0
#: answers that mean "nobody answered": retried by the export buffer, not by the SDK inside one export
_UNREACHED = {grpc.StatusCode.UNAVAILABLE: "cannot reach", grpc.StatusCode.DEADLINE_EXCEEDED: "no answer from"}
#: trailing metadata of a live collector that asks to be retried after a delay
_RETRY_INFO = "google.rpc.retryinfo-bin"


class _Bounded:
    """Mixed in before an SDK gRPC exporter; ``last_error`` keeps why the last export failed, for the buffer."""

    def __init__(self, **kwargs):
        self.last_error: ExportFailed | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()  # the process whose channel is open; None: open a new one at the next export
        super().__init__(**kwargs)
        os.register_at_fork(before=self._before_fork, after_in_child=self._after_fork_in_child)

    @property
    def _timeout(self) -> float:
        return deadline.remaining(self._configured_timeout)

    @_timeout.setter
    def _timeout(self, seconds: float) -> None:
        self._configured_timeout = seconds

    @property
    def _client(self):
        return self._bounded_stub

    @_client.setter
    def _client(self, stub) -> None:
        self._bounded_stub = None if stub is None else _BoundedStub(stub, self)

    def export(self, *args, **kwargs):
        """One export at a time (a metric reader's thread and an exit's flush may overlap), over this process's own
        channel."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._initialize_channel_and_stub()
            return super().export(*args, **kwargs)

    def _reopen_later(self) -> None:
        """Close this process's channel; the next export opens a new one (it connects at once, where a channel
        that failed to connect would wait out gRPC's reconnect back-off)."""
        if self._pid == os.getpid():
            self._channel.close()
        self._pid = None

    def _before_fork(self) -> None:
        if self._lock.acquire(timeout=_FORK_WAIT):
            try:
                self._reopen_later()
            finally:
                self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork


class _BoundedStub:
    """The exporter's stub: an unreachable or silent collector raises ``ExportFailed``, which the SDK does not retry."""

    def __init__(self, stub, owner: _Bounded):
        self._stub = stub
        self._owner = owner

    def Export(self, request, metadata=None, timeout=None):  # noqa: N802 (the gRPC service's method)
        owner = self._owner
        shown = owner._endpoint.rpartition("@")[2]  # host:port, without any credentials
        if timeout is None or timeout <= 0:
            owner.last_error = ExportFailed(f"no time was left to send to {shown} (OMTEL_EXIT_TIMEOUT, "
                                            "OMTEL_FLUSH_TIMEOUT)")
            raise owner.last_error
        try:
            response = self._stub.Export(request=request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            if code in _UNREACHED and _RETRY_INFO not in dict(exc.trailing_metadata() or ()):
                owner._reopen_later()
                owner.last_error = ExportFailed(f"{_UNREACHED[code]} the collector at {shown} (gRPC, within "
                                                f"{timeout:.1f} s): {details}")
                raise owner.last_error from None
            owner.last_error = ExportFailed(f"the collector at {shown} answered {code.name}: {details}")
            raise
        owner.last_error = None
        return response


class BoundedSpanExporter(_Bounded, OTLPSpanExporter):
    pass


class BoundedLogExporter(_Bounded, OTLPLogExporter):
    pass


class BoundedMetricExporter(_Bounded, OTLPMetricExporter):
    pass


_EXPORTERS = {"traces": BoundedSpanExporter, "logs": BoundedLogExporter, "metrics": BoundedMetricExporter}


def exporter(signal: str) -> _Bounded:
    """An OTLP/gRPC exporter for ``signal``; it reads OTEL_EXPORTER_OTLP_* itself."""
    return _EXPORTERS[signal]()

"""OTEL_EXPORTER_OTLP_PROTOCOL and its per-signal variants: the values omegaml-otel builds exporters for, and the fix
that is named where the gRPC exporter is not installed.

The gRPC exporters themselves, against a real collector and in a Celery prefork worker, are tested in
tests/test_distro.py, whose virtual environment has them. Here ``grpc`` is made unimportable with Python's own
switch for that (``sys.modules[name] = None``), whatever this environment holds.
"""
from __future__ import annotations

import sys

import pytest

from omegaml_otel._internal.export import otlp
from omegaml_otel._internal.export.pipeline import _exporter
from omegaml_otel.errors import ConfigurationError
from omegaml_otel.settings import reset_settings, settings


@pytest.fixture
def protocols(monkeypatch):
    """The settings of an environment with ``values`` set; the process's settings are restored afterwards."""
    def set_(**values):
        for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                     "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        reset_settings()
        return settings()
    yield set_
    reset_settings()


def test_a_signal_protocol_takes_precedence(protocols):
    cfg = protocols(OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_EXPORTER_OTLP_LOGS_PROTOCOL=" http/protobuf ")
    assert cfg.otlp_protocols == {"traces": "grpc", "logs": "http/protobuf", "metrics": "grpc"}
    assert protocols().otlp_protocols == dict.fromkeys(("traces", "logs", "metrics"), "http/protobuf")


def test_grpc_without_the_grpc_exporter_names_the_fix(protocols, monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)
    monkeypatch.delitem(sys.modules, "omegaml_otel._internal.export.otlp_grpc", raising=False)
    cfg = protocols(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc")
    assert type(_exporter("logs", "otlp", cfg)[1]) is otlp.BoundedSession  # the other signals keep OTLP/HTTP
    assert type(_exporter("traces", "otlp_proto_http", cfg)[1]) is otlp.BoundedSession  # HTTP by its name
    with pytest.raises(ConfigurationError) as err:
        _exporter("traces", "otlp", cfg)
    message = str(err.value)
    assert "pip install opentelemetry-exporter-otlp-proto-grpc" in message, message
    assert "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" in message and "'http/protobuf'" in message, message


@pytest.mark.parametrize("protocol", ["http/json", "gRPC", "http"])
def test_another_protocol_names_the_values_allowed(protocols, protocol):
    cfg = protocols(OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
    with pytest.raises(ConfigurationError) as err:
        _exporter("metrics", "otlp", cfg)
    message = str(err.value)
    assert f"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL is {protocol!r}" in message, message
    assert "'http/protobuf' or 'grpc'" in message, message

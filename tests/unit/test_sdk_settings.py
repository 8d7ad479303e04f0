"""The SDK's own settings on the package's path: batch processor settings, OTEL_SDK_DISABLED, attribute limits on the
emitter's fast path (compared with the SDK's own ``Logger``), and the resource a forked child gets.

Settings are read from a private environment (``monkeypatch``), each pipeline is built in a fresh interpreter
(the process's own pipeline is shared with the end-to-end tests), and the fork is a real ``os.fork``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from omegaml_otel._internal.export import rows
from omegaml_otel._internal.export.buffer import ExportBuffer
from omegaml_otel._internal.export.emitter import LogEmitter
from omegaml_otel._internal.export.pipeline import log_limits, resource
from omegaml_otel.conventions import INSTANCE_ID, PROCESS_PARENT_PID, PROCESS_PID
from omegaml_otel.errors import ConfigurationError
from omegaml_otel.settings import reset_settings, settings

from .helpers import memory_logs
from .helpers import resource as helper_resource


@pytest.fixture
def env(monkeypatch):
    """Set variables for one settings() read; the process's settings are restored afterwards."""
    def set_(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        reset_settings()
        return settings()
    yield set_
    monkeypatch.undo()
    reset_settings()


def test_batch_processor_settings_are_read_per_signal(env):
    cfg = env(OTEL_BLRP_MAX_QUEUE_SIZE="2048", OTEL_BLRP_MAX_EXPORT_BATCH_SIZE="512", OTEL_BLRP_EXPORT_TIMEOUT="1500",
              OTEL_BLRP_SCHEDULE_DELAY="250", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="64", OMTEL_MAX_QUEUE="9000")
    logs, spans = cfg.batching["logs"], cfg.batching["traces"]
    assert (logs.max_queue, logs.max_batch, logs.export_timeout, logs.schedule_delay) == (2048, 512, 1.5, 0.25)
    # unset: OMTEL_MAX_QUEUE, our batch size, the SDK's export timeout, and no delay (the store's own interval)
    assert (spans.max_queue, spans.max_batch, spans.export_timeout, spans.schedule_delay) == (9000, 64, 30.0, None)


def test_bad_batch_settings_name_the_variable(env):
    with pytest.raises(ConfigurationError, match="OTEL_BSP_MAX_QUEUE_SIZE='lots'"):
        env(OTEL_BSP_MAX_QUEUE_SIZE="lots")


def test_sdk_disabled_and_limits_follow_the_sdk(env):
    cfg = env(OTEL_SDK_DISABLED=" TRUE ", OTEL_ATTRIBUTE_COUNT_LIMIT="3",
              OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT="4", OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="100")
    assert cfg.sdk_disabled
    assert (cfg.log_attribute_count_limit, cfg.log_attribute_length_limit) == (3, 4)
    cfg = env(OTEL_SDK_DISABLED="yes", OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT="unset")
    assert not cfg.sdk_disabled  # the SDK turns off only for "true"
    assert cfg.log_attribute_count_limit is None


ATTRIBUTES = {f"k{i}": "v" * (i + 3) for i in range(6)} | {"seq": ["abcdefgh", "ij"], "n": 123456789}


def test_fast_path_limits_equal_the_sdk_logger(env, tmp_path):
    """The same record through the SDK's Logger and through the fast path keeps the same attributes."""
    cfg = env(OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT="5", OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="4")
    limits = log_limits(cfg)
    exported = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=helper_resource(), shutdown_on_exit=False, log_record_limits=limits)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exported))
    sdk = LogEmitter(provider, scrubber=None)
    got = []
    fast = LogEmitter(provider, ExportBuffer(got.extend, name="logs", interval=60), scrubber=None, limits=limits)
    for emitter in (sdk, fast):
        emitter.emit("limits", timestamp=time.time_ns(), severity_number=SeverityNumber.INFO, severity_text="INFO",
                     body="b" * 10, attributes=dict(ATTRIBUTES))
    fast._buffer.flush()
    expected = dict(exported.get_finished_logs()[0].log_record.attributes)
    assert dict(got[0].attributes) == expected
    assert len(expected) == 5 and expected["seq"] == ("abcd", "ij") and got[0].body == "b" * 10


def test_fast_path_leaves_records_under_the_limits_alone(env):
    limits = log_limits(env())
    provider, _ = memory_logs()
    got = []
    fast = LogEmitter(provider, ExportBuffer(got.extend, name="logs", interval=60), scrubber=None, limits=limits)
    attributes = {"a": "x" * 10_000}
    fast.emit("limits", timestamp=1, severity_number=SeverityNumber.INFO, severity_text="INFO", body="b",
              attributes=attributes)
    fast._buffer.flush()
    assert got[0].attributes is attributes  # no copy: the default limits cannot change it


def test_export_timeout_bounds_one_background_export():
    """An export of the export thread may wait export_timeout, as deadline.remaining tells the store and OTLP."""
    from omegaml_otel._internal import deadline

    seen = []
    buffer = ExportBuffer(lambda batch: seen.append(deadline.remaining(99.0)), name="logs", interval=60,
                          export_timeout=0.5)
    buffer.add("record")
    assert buffer.flush()
    assert 0 < seen[0] <= 0.5


def test_a_forked_child_has_its_own_process_attributes(env):
    res = resource(env(), "worker")
    parent = dict(res.attributes)
    assert parent[PROCESS_PID] == os.getpid() and parent[PROCESS_PARENT_PID] == os.getppid()
    read, write = os.pipe()
    rows._resources.get(res)  # the parent has encoded it for its rows
    pid = os.fork()
    if pid == 0:  # the child reports what the same resource object says there, and what its rows carry
        os.write(write, json.dumps([dict(res.attributes), rows._resources.get(res)[0]]).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child, encoded = json.loads(os.read(read, 65536))
    os.close(read)
    os.close(write)
    assert child[PROCESS_PID] == pid and child[PROCESS_PARENT_PID] == os.getpid()
    assert child[INSTANCE_ID] != parent[INSTANCE_ID]
    assert child["service.name"] == parent["service.name"] == "omegaml-worker"
    assert dict(res.attributes) == parent  # the parent's own are unchanged
    assert json.loads(encoded)[PROCESS_PID] == str(pid)  # the child's rows are encoded anew, not the parent's cache


DISABLED = r"""
import logging, os, sys
from omegaml_otel._internal.export.pipeline import pipeline
from omegaml_otel.instrumentation import LogBridge
p = pipeline()
logging.getLogger().addHandler(LogBridge())
logging.getLogger("x").warning("dropped")
p.flush_for_read()
p.shutdown()
print(len(p.buffers), len(p.metric_exporters()), os.path.exists(sys.argv[1]))
"""


def test_sdk_disabled_pipeline_records_nothing(tmp_path):
    store = tmp_path / "home" / "telemetry.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(OMTEL_HOME=str(tmp_path / "home"), OTEL_SDK_DISABLED="true")
    run = subprocess.run([sys.executable, "-c", DISABLED, str(store)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "0", "False"]

"""Plant an experiment ``artifact`` record the way an outsider can: plain OpenTelemetry SDK, no omegaml-otel code.

A collector writes whatever reaches its OTLP port into the store; here the SDK's logger hands the record to the
``omtel`` log exporter (loaded by its entry-point name, as ``opentelemetry-instrument`` would), which writes it into
the store of ``OMTEL_HOME``. The payload pickles to ``open(marker, 'w')``: if anything unpickles it, ``marker``
appears.

    python plant_record.py EXPERIMENT NAME MARKER inline     # pickled bytes inside the record (base64)
    python plant_record.py EXPERIMENT NAME MARKER forged     # bytes in the artifact folder, a made-up signature
"""
from __future__ import annotations

import base64
import hashlib
import json
import pickle
import sys
import time
import uuid
from importlib.metadata import entry_points
from pathlib import Path

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from omegaml_otel.conventions import EVENT, EXPERIMENT, EXPERIMENT_SCOPE, EXTRA_PREFIX, KEY, RUN, VALUE
from omegaml_otel.settings import settings


class Planted:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def main(experiment: str, name: str, marker: str, how: str) -> None:
    payload = pickle.dumps(Planted(marker))
    if how == "inline":
        value = {"name": name, "format": "pickle", "data": base64.b64encode(payload).decode()}
    else:  # the file where the store would keep it, and a signature made without the key
        digest = hashlib.sha256(payload).hexdigest()
        path = settings().artifact_folder / digest[:2] / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        value = {"name": name, "format": "pickle", "sha256": digest,
                 "signature": hashlib.sha256(b"guess" + payload).hexdigest()}
    (exporter,) = entry_points(group="opentelemetry_logs_exporter", name="omtel")
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter.load()()))
    provider.get_logger(EXPERIMENT_SCOPE).emit(LogRecord(
        timestamp=time.time_ns(), severity_number=SeverityNumber.INFO, severity_text="INFO", body=f"artifact {name}",
        # shaped as log_artifact() writes one, its name extra field included, so restore_artifacts(name=) finds it
        attributes={EXPERIMENT: experiment, RUN: uuid.uuid4().hex, EVENT: "artifact", KEY: name,
                    VALUE: json.dumps(value), EXTRA_PREFIX + "name": name}))
    provider.shutdown()
    assert not Path(marker).exists()


if __name__ == "__main__":
    main(*sys.argv[1:5])

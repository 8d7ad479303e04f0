"""Experiment events as OpenTelemetry log records, and their values as JSON.

An event is a log record of scope ``omegaml.experiment`` whose attributes carry the experiment, the event (start,
stop, metric, task_call, …), the run id (the run's trace id), key, step and the value as JSON. The event is also
the record's ``EventName``, but readers use the attribute: rotel's ClickHouse exporter does not write
``EventName``. The body starts with the event (readers filter on that first). Events are stored like any other
log record, so Grafana and SQL see them too.
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import time
from typing import Any

import numpy as np
import pandas as pd
from opentelemetry._logs import SeverityNumber

from omegaml_otel.capture.context import record_attributes
from omegaml_otel.export.emitter import emitter_for
from omegaml_otel.stores.base import to_ns

SCOPE = "omegaml.experiment"
EXPERIMENT = "omegaml.experiment"
RUN = "omegaml.run.id"
EVENT = "omegaml.event"
KEY = "omegaml.key"
VALUE = "omegaml.value"
STEP = "omegaml.step"
PROVIDER = "omegaml.provider"
EXTRA = "omegaml.extra."


def to_jsonable(value: Any) -> Any:
    """omega-ml's value coercion, without its silent ``str()`` of DataFrames: these become lists of records."""
    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records", date_format="iso"))
    if isinstance(value, pd.Series):
        return json.loads(value.to_json(orient="values", date_format="iso"))
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def emit(experiment: str, run_id: str, event: str, key: str | None = None, value: Any = None,
         step: int | None = None, dt: Any = None, extra: dict | None = None, provider: str | None = None) -> None:
    attrs = {**record_attributes.get(), EXPERIMENT: experiment, RUN: run_id, EVENT: event}
    if key is not None:
        attrs[KEY] = str(key)
    if value is not None:
        attrs[VALUE] = json.dumps(to_jsonable(value), ensure_ascii=False)
    if step is not None:
        attrs[STEP] = int(step)
    if provider is not None:
        attrs[PROVIDER] = provider
    for k, v in (extra or {}).items():
        if v is not None:
            attrs[EXTRA + k] = v if isinstance(v, (str, int, float, bool)) else json.dumps(to_jsonable(v))
    ts = time.time_ns() if dt is None else to_ns(dt)
    emitter_for().emit(SCOPE, timestamp=ts, severity_number=SeverityNumber.INFO, severity_text="INFO",
                       body=f"{event} {key}" if key is not None else event, attributes=attrs, event_name=event)

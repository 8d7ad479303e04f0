"""The native reader: ``om.telemetry.logs()/spans()/metrics()`` with the ClickHouse exporter's column names.

Filters are keywords ``Column=value`` or ``Column__op=value`` (ops: eq, ne, lt, lte, gt, gte, in, contains,
startswith) on the table's columns; ``attributes={key: value}`` filters the record's own attribute map
(LogAttributes, SpanAttributes or Attributes) and ``resource={key: value}`` the ResourceAttributes. ``since`` and
``until`` bound the time column and accept what ``exp.data(since=...)`` does (datetime, timedelta, '5h', ISO).
"""
from __future__ import annotations

import pandas as pd

from omegaml_otel._internal.compat.timeparse import parse_time
from omegaml_otel._internal.export.pipeline import flush_for_read
from omegaml_otel._internal.stores import Cond, Store, default_store, schema

__all__ = ["logs", "spans", "metrics"]

_ATTRS = {schema.LOGS: "LogAttributes", schema.TRACES: "SpanAttributes", schema.GAUGE: "Attributes",
          schema.SUM: "Attributes"}


def _conds(table: str, attributes: dict | None, resource: dict | None, filters: dict) -> list[Cond]:
    conds = []
    for name, value in filters.items():
        column, _, op = name.partition("__")
        if op == "in":
            value = _values(name, value)
        conds.append(Cond(column, op or "eq", value))
    for key, value in (attributes or {}).items():
        conds.append(Cond(_ATTRS[table], "in" if isinstance(value, (list, tuple)) else "eq", value, key=key))
    for key, value in (resource or {}).items():
        conds.append(Cond("ResourceAttributes", "in" if isinstance(value, (list, tuple)) else "eq", value, key=key))
    return conds


def _values(name: str, value) -> list:
    """The values of an ``__in`` filter. A string is iterable too, and would silently match its characters."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ValueError(f"filter {name}={value!r} needs a list of values, e.g. {name}=[{value!r}]")
    return list(value)


def _read(table: str, since, until, attributes, resource, limit, store: Store | None, filters) -> pd.DataFrame:
    kw = dict(conds=_conds(table, attributes, resource, filters), limit=limit,
              since=parse_time(since, name="since") if since is not None else None,
              until=parse_time(until, name="until", future=True) if until is not None else None)
    store = store or default_store()
    flush_for_read()
    return store.metrics(**kw) if table == schema.GAUGE else store.query(table, **kw)


def logs(since=None, until=None, *, attributes: dict | None = None, resource: dict | None = None,
         limit: int | None = None, store: Store | None = None, **filters) -> pd.DataFrame:
    """Rows of ``otel_logs``, oldest first."""
    return _read(schema.LOGS, since, until, attributes, resource, limit, store, filters)


def spans(since=None, until=None, *, attributes: dict | None = None, resource: dict | None = None,
          limit: int | None = None, store: Store | None = None, **filters) -> pd.DataFrame:
    """Rows of ``otel_traces`` (``Timestamp`` is the span start, ``Duration`` in ns), oldest first."""
    return _read(schema.TRACES, since, until, attributes, resource, limit, store, filters)


def metrics(since=None, until=None, *, attributes: dict | None = None, resource: dict | None = None,
            limit: int | None = None, store: Store | None = None, **filters) -> pd.DataFrame:
    """Data points of ``otel_metrics_gauge`` and ``otel_metrics_sum`` together, oldest first."""
    return _read(schema.GAUGE, since, until, attributes, resource, limit, store, filters)

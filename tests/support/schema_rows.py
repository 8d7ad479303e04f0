"""Rows of the logical schema as the stores' ``write()`` takes them (shared by the store and Grafana tests)."""
from __future__ import annotations

import json

from omegaml_otel._internal.stores import schema

_DEFAULTS = {"time": 0, "int": 0, "float": 0.0, "str": "", "map": "{}", "list": "[]"}


def row(table: str, **values) -> tuple:
    """A row of ``table`` in schema order: maps and lists as JSON text (dicts/lists are encoded), times as int ns.
    Column names with dots are given with underscores (``Events_Name=...``)."""
    out = []
    for name, kind in schema.TABLES[table]:
        value = values.pop(name.replace(".", "_"), _DEFAULTS[kind])
        if kind in ("map", "list") and not isinstance(value, str):
            value = json.dumps(value)
        out.append(value)
    assert not values, f"unknown columns {values}"
    return tuple(out)

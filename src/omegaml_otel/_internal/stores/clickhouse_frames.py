"""ClickHouse query results as the DataFrames ``SqliteStore`` returns: the same dtypes for each kind of column.

Imported by ``ClickHouseStore.query`` when it first reads, never at the top of ``clickhouse``: a worker that writes
ClickHouse rows never loads pandas or numpy (lean workers).

Plans without array columns (every compat reader's) are read in ClickHouse's Arrow format (``arrow_to_frame``):
clickhouse-connect's ``query_df`` decodes the native format column by column in Python and costs about twice the
Arrow read of the same rows, and Arrow strings become the Python ``str`` objects of ``python_strings`` in one C
loop. Array columns (spans' events and links, histogram buckets) keep ``query_df`` (``to_frame``), whose values
``_plain`` turns into SqliteStore's.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from omegaml_otel._internal.stores.base import to_ns
from omegaml_otel._internal.stores.plan import QueryPlan


def to_frame(raw: pd.DataFrame, plan: QueryPlan, python_strings: bool = False) -> pd.DataFrame:
    """clickhouse-connect's frame (columns ``c0``, ``c1``, …) -> the plan's labels, with SqliteStore's dtypes."""
    out = {}
    for i, c in enumerate(plan.columns):
        col = raw[f"c{i}"] if f"c{i}" in raw.columns else pd.Series([], dtype=object)
        out[c.label] = _reader("mapkey" if c.key is not None else c.kind, c.label, col, python_strings)
    df = pd.DataFrame(out, columns=plan.labels)
    df.index = pd.RangeIndex(len(df))
    return df


def uses_arrow(plan: QueryPlan) -> bool:
    """Whether ``plan`` is read in the Arrow format (``arrow_to_frame``): every plan without array columns."""
    return all(c.kind != "list" for c in plan.columns)


def arrow_to_frame(table: pa.Table, plan: QueryPlan, python_strings: bool = False) -> pd.DataFrame:
    """clickhouse-connect's Arrow table (columns ``c0``, ``c1``, …) -> the plan's labels, with SqliteStore's dtypes."""
    out = {}
    for i, c in enumerate(plan.columns):
        kind = "mapkey" if c.key is not None else c.kind
        col = table.column(i)
        if kind in ("str", "mapkey") and python_strings:  # str objects, missing as None, in one C loop
            out[c.label] = pd.Series(_python_strings(col), dtype=object, copy=False)
        elif kind == "time":
            col = col.combine_chunks()
            if pa.types.is_timestamp(col.type):  # DateTime64: UTC with a zone, naive ns as SqliteStore's
                values = col.cast(pa.timestamp("ns")).to_numpy(zero_copy_only=False)
            else:  # DateTime: Arrow has its UInt32 seconds
                values = col.to_numpy(zero_copy_only=False).astype("int64") * 10**9
            out[c.label] = _reader(kind, c.label, pd.Series(values))
        elif kind == "map":
            out[c.label] = pd.Series([dict(v) for v in col.to_pylist()], dtype=object)
        else:
            if pa.types.is_dictionary(col.type):  # strings, as pandas infers them (not categories)
                col = col.cast(col.type.value_type)
            out[c.label] = _reader(kind, c.label, col.to_pandas(), python_strings)
    return pd.DataFrame(out, columns=plan.labels, copy=False)


#: settings of an Arrow read: ``LowCardinality`` columns (level, logger, service names) as dictionaries, whose few
#: distinct strings become Python objects once each (``_python_strings``)
ARROW_SETTINGS = {"output_format_arrow_low_cardinality_as_dictionary": 1}


def _python_strings(col: pa.ChunkedArray) -> np.ndarray:
    """An Arrow string column as an object array of ``str`` (missing: None); a dictionary column makes each
    distinct string once and shares it between its rows."""
    parts = []
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            words = np.append(chunk.dictionary.to_numpy(zero_copy_only=False), None)
            parts.append(words[chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False)])
        else:
            parts.append(chunk.to_numpy(zero_copy_only=False))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.array([], dtype=object)


def _plain(x):
    if isinstance(x, np.datetime64):
        return int(x.astype("datetime64[ns]").astype("int64"))
    if isinstance(x, (pd.Timestamp, datetime)):
        return to_ns(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


#: the dtype pandas infers for a column of strings: ``str`` from pandas 3 on, object before
_INFERRED_STR = pd.Series(["a"]).dtype


def _reader(kind: str, label: str, s: pd.Series, python_strings: bool = False) -> pd.Series:
    """clickhouse-connect's column -> the dtype SqliteStore returns for that kind."""
    if kind == "time":
        if not len(s):
            return pd.to_datetime(pd.Series([], dtype=object), unit="ns")
        if pd.api.types.is_datetime64_any_dtype(s):
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            return s.astype("datetime64[ns]")
        return pd.to_datetime(s, unit="ns")
    if kind == "int":
        return s.astype("int64") if len(s) else s.astype(object)
    if kind == "float":
        return s.astype("float64") if len(s) else s.astype(object)
    if kind == "map":
        return pd.Series([dict(v) if v is not None else {} for v in s], dtype=object, index=s.index)
    if kind == "list":
        return pd.Series([[_plain(x) for x in v] if v is not None else [] for v in s], dtype=object, index=s.index)
    # str and map keys: missing as None, dtype inferred as pandas does for SqliteStore's records. Arrow strings
    # convert in one step where pandas infers its string dtype (pandas 3) and some value is present (all-missing
    # columns infer as object); going through Python objects costs about 1 s per million rows
    if len(s) and s.dtype != object and pd.api.types.is_string_dtype(s) and not s.isna().all():
        if python_strings:
            return s.astype(object).where(s.notna(), None)
        if not pd.api.types.is_object_dtype(_INFERRED_STR):
            return s.astype(_INFERRED_STR)
    values = [None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v for v in s.tolist()]
    if python_strings or not values:  # python_strings promises object columns, whatever the client returned
        return pd.Series(values, index=s.index, dtype=object)
    return pd.Series(values, index=s.index)

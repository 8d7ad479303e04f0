"""ClickHouseStore: the exporter's ClickHouse tables through ``clickhouse-connect``.

URLs: ``clickhouse://user:pass@host:8123/otel`` (HTTP), ``clickhouses://…`` or ``?secure=1`` (HTTPS), and
``chdb:///abs/path`` (the embedded engine, same client; ``?database=otel``). Credentials come from the URL, else
from ``CLICKHOUSE_USER``/``CLICKHOUSE_PASSWORD``; the password never appears in ``url``, errors or logs.

Every value reaches the server as a typed bound parameter (``{p0:String}``); identifiers come from the logical
schema only. The table layout is probed with ``DESCRIBE TABLE``, so both exporter layouts are read: logs with or
without ``TimestampTime``, metric times as ``DateTime64(9)`` or ``DateTime`` (seconds: written truncated).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
import pandas as pd

from omegaml_otel._internal.secure import mask_url
from omegaml_otel._internal.stores import schema
from omegaml_otel._internal.stores.base import COMPARISONS, Cond, MapKey, Store, StoreError, to_ns
from omegaml_otel._internal.stores.clickhouse_ddl import IDENT, quote_ident, render_ddl
from omegaml_otel._internal.stores.plan import Column, Filter, QueryPlan, SqlDialect
from omegaml_otel.settings import settings

INSTALL_HINT = "pip install 'omegaml-otel[clickhouse]'"
_DEFAULT_SQL = {"str": "''", "int": "0", "float": "0", "map": "map()", "list": "[]"}


_q = quote_ident


class ClickHouseStore(Store):
    def __init__(self, url: str, *, create: bool = True):
        self.url = mask_url(url)
        self._raw_url = url
        self._create = create
        self._lock = threading.RLock()
        self._client = None
        self._layout: dict[str, dict[str, str]] | None = None
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.scheme = parts.scheme
        if parts.scheme == "chdb":
            path = url[len("chdb://"):].split("?", 1)[0]
            if not path.startswith("/"):
                raise StoreError(f"store URL {mask_url(url)!r} needs an absolute path: chdb:///abs/path")
            self.path = "/" + path.lstrip("/")
            self.database = query.get("database", "otel")
        elif parts.scheme in ("clickhouse", "clickhouses"):
            self.path = None
            self.database = unquote(parts.path.strip("/")) or query.get("database", "otel")
            self._secure = parts.scheme == "clickhouses" or query.get("secure", "").lower() in ("1", "true", "yes")
            self._host = parts.hostname or "localhost"
            self._port = parts.port or (8443 if self._secure else 8123)
            cfg = settings()
            self._user = unquote(parts.username) if parts.username else cfg.clickhouse_user
            self._password = unquote(parts.password) if parts.password is not None else cfg.clickhouse_password
        else:
            raise StoreError(f"store URL {self.url!r} is not a ClickHouse URL; use chdb:///abs/path or "
                             "clickhouse://user:password@host:8123/otel")
        if not IDENT.match(self.database):
            raise StoreError(f"store URL {self.url!r} names database {self.database!r}; use a plain identifier")

    # -- connection ---------------------------------------------------------------------------------------------
    def _conn(self):
        if self._client is None:
            try:  # the optional 'clickhouse' extra: imported when a ClickHouse store is first used
                import clickhouse_connect
                if self.scheme == "chdb":
                    import chdb  # noqa: F401  (the embedded engine clickhouse-connect drives)
            except ImportError as exc:
                raise StoreError(f"store {self.url} needs the ClickHouse client: {INSTALL_HINT} ({exc})") from exc
            try:
                if self.scheme == "chdb":
                    Path(self.path).mkdir(parents=True, exist_ok=True)
                    self._client = clickhouse_connect.get_client(dsn=f"chdb://{quote(self.path)}")
                else:
                    self._client = clickhouse_connect.get_client(
                        host=self._host, port=self._port, username=self._user, password=self._password,
                        secure=self._secure, compress="lz4")
            except Exception as exc:
                raise StoreError(f"cannot open store {self.url}: {self._clean(exc)}; check the URL, the server "
                                 "and the credentials (CLICKHOUSE_USER/CLICKHOUSE_PASSWORD)"
                                 + ("; a chdb folder can be open in one process only" if self.path else "")
                                 ) from None
        return self._client

    def _clean(self, exc: BaseException) -> str:
        text = mask_url(str(exc))
        if self.scheme != "chdb" and self._password:
            text = text.replace(self._password, "***")
        return text

    def _describe(self) -> dict[str, dict[str, str]]:
        """{table: {column: type}} for the tables that exist."""
        if self._layout is None:
            layout = {}
            client = self._conn()
            for table in schema.TABLES:
                try:
                    rows = client.query(f"DESCRIBE TABLE {self.database}.{table}").result_rows
                except Exception as exc:
                    if "UNKNOWN_TABLE" in str(exc) or "UNKNOWN_DATABASE" in str(exc) or "doesn't exist" in str(exc) \
                            or "does not exist" in str(exc):
                        continue
                    raise StoreError(f"cannot read the layout of store {self.url}: {self._clean(exc)}") from None
                layout[table] = {r[0]: r[1] for r in rows}
            if not layout and self._create and self.scheme == "chdb":
                self.apply_schema()
                return self._describe()
            self._layout = layout
        return self._layout

    def _table(self, table: str) -> dict[str, str]:
        if table not in schema.TABLES:
            raise ValueError(f"unknown table {table!r}; use one of {', '.join(schema.TABLES)}")
        with self._lock:
            layout = self._describe()
        if table not in layout:
            raise StoreError(f"store {self.url} has no table {self.database}.{table}; create the tables with "
                             f"`omtel schema apply --store URL --database {self.database}`")
        return layout[table]

    def apply_schema(self, ttl_days: int | None = None, cluster: str | None = None) -> list[str]:
        """Create the database and tables (``IF NOT EXISTS``), on every node of ``cluster`` if given (replicated
        local tables + Distributed tables, see ``render_ddl``): returns the statements run."""
        stmts = render_ddl(self.database, ttl_days, cluster=cluster)
        with self._lock:
            client = self._conn()
            for stmt in stmts:
                try:
                    client.command(stmt)
                except Exception as exc:
                    raise StoreError(f"cannot apply the schema to store {self.url}: {self._clean(exc)}; the user "
                                     "needs CREATE rights (use the admin user, not the reader)") from None
            self._layout = None
        return stmts

    def tables(self) -> dict[str, dict[str, str]]:
        """The probed layout: {table: {column: ClickHouse type}}."""
        with self._lock:
            self._layout = None
            return dict(self._describe())

    # -- write --------------------------------------------------------------------------------------------------
    def write(self, table: str, rows: Sequence[tuple]) -> None:
        if not rows:
            return
        layout = self._table(table)
        cols = schema.columns(table)
        keep = [i for i, c in enumerate(cols) if c in layout]
        convs = [_writer(schema.kind(table, cols[i]), layout[cols[i]]) for i in keep]
        data = [[conv(row[i]) for i, conv in zip(keep, convs)] for row in rows]
        with self._lock:
            try:
                self._conn().insert(f"{self.database}.{table}", data, column_names=[cols[i] for i in keep])
            except Exception as exc:
                raise StoreError(f"cannot write to store {self.url}: {self._clean(exc)}") from None

    # -- read ---------------------------------------------------------------------------------------------------
    def query(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey] | None = None,
              since: datetime | int | None = None, until: datetime | int | None = None,
              limit: int | None = None, descending: bool = False, python_strings: bool = False) -> pd.DataFrame:
        plan = QueryPlan.build(table, conds=conds, columns=columns, since=since, until=until, limit=limit,
                               descending=descending)
        source = f"{self.database}.{table}"
        dialect = _ClickHouseDialect(self._table(table), self, source)
        sql = dialect.render(plan, source)
        params = dialect.params
        with self._lock:
            try:
                raw = self._conn().query_df(sql, parameters=params)
            except Exception as exc:
                raise StoreError(f"cannot read store {self.url}: {self._clean(exc)}") from None
        out = {}
        for i, c in enumerate(plan.columns):
            col = raw[f"c{i}"] if f"c{i}" in raw.columns else pd.Series([], dtype=object)
            out[c.label] = _reader("mapkey" if c.key is not None else c.kind, c.label, col, python_strings)
        df = pd.DataFrame(out, columns=plan.labels)
        df.index = pd.RangeIndex(len(df))
        return df

    def truncate(self) -> None:
        """Empty every table (tests, benchmarks)."""
        with self._lock:
            for table in self._describe():
                self._conn().command(f"TRUNCATE TABLE IF EXISTS {self.database}.{table}")

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:
                    pass
            self._client = None
            self._layout = None


# -- conversions ------------------------------------------------------------------------------------------------
def _ns_or_int(v) -> int:
    return int(v)


def _writer(kind: str, ch_type: str):
    """SQLite-style row value -> what clickhouse-connect inserts into ``ch_type``."""
    if kind == "time":
        if ch_type.startswith("DateTime64"):
            return _ns_or_int
        return lambda v: int(v) // 1_000_000_000  # DateTime (seconds)
    if kind == "map":
        return lambda v: {str(k): str(x) for k, x in (json.loads(v) if isinstance(v, str) else (v or {})).items()}
    if kind == "list":
        inner = ch_type[len("Array("):-1] if ch_type.startswith("Array(") else ""

        def conv(v):
            items = json.loads(v) if isinstance(v, str) else list(v or [])
            if inner.startswith("Map("):
                return [{str(k): str(x) for k, x in (m or {}).items()} for m in items]
            if inner.startswith("DateTime64"):
                return [int(x) for x in items]
            if "String" in inner:
                return ["" if x is None else str(x) for x in items]
            return items
        return conv
    if kind == "int":
        if ch_type in ("Bool", "Boolean"):
            return lambda v: bool(v)
        return lambda v: int(v) if v is not None else 0
    if kind == "float":
        return lambda v: float(v) if v is not None else 0.0
    return lambda v: "" if v is None else str(v)


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


class _ClickHouseDialect(SqlDialect):
    """Typed named parameters (``{p0:String}``); optional columns a table's layout lacks read as their default."""

    def __init__(self, layout: dict[str, str], store: ClickHouseStore, source: str):
        self.params: dict = {}
        self._layout = layout
        self._store = store
        self._source = source

    def quote(self, name: str) -> str:
        return _q(name)

    def bind(self, value, type_: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{type_}}}"

    def column(self, column: Column, index: int) -> str:
        if column.key is not None:
            key = self.bind(column.key, "String")
            return f"if(mapContains({_q(column.column)}, {key}), {_q(column.column)}[{key}], NULL) AS c{index}"
        if column.column in self._layout:
            return f"{_q(column.column)} AS c{index}"
        if column.kind in _DEFAULT_SQL:  # an optional column this layout lacks (e.g. EventName)
            return f"{_DEFAULT_SQL[column.kind]} AS c{index}"
        raise StoreError(f"store {self._store.url} table {self._source} lacks column {column.column!r}; re-create "
                         "it with `omtel schema apply`")

    def condition(self, f: Filter) -> str:
        if f.op == "in" and not f.value:
            return "0"
        guard = ""
        lhs, kind = _q(f.column), f.kind
        if f.key is not None:
            key = self.bind(f.key, "String")
            guard = f"mapContains({lhs}, {key}) AND "  # a missing key matches nothing, as in SQLite
            lhs = f"{lhs}[{key}]"
        elif kind in ("map", "list"):
            lhs, kind = f"toJSONString({lhs})", "str"
        if f.op in ("contains", "startswith"):
            text = lhs if kind == "str" else f"toString({lhs})"
            p = self.bind(str(f.value), "String")
            fn = f"position({text}, {p}) > 0" if f.op == "contains" else f"startsWith({text}, {p})"
            return f"({guard}{fn})"
        if f.op == "in":
            ch_type, values, wrap = _param_type(kind, f.value)
            return f"({guard}{lhs} IN {wrap(self.bind(values, f'Array({ch_type})'), array=True)})"
        ch_type, (v,), wrap = _param_type(kind, [f.value])
        return f"({guard}{lhs} {COMPARISONS[f.op]} {wrap(self.bind(v, ch_type))})"


def _param_type(kind: str, values: list):
    if kind == "time":
        def wrap(p, array=False):
            return f"arrayMap(x -> fromUnixTimestamp64Nano(x), {p})" if array else f"fromUnixTimestamp64Nano({p})"
        return "Int64", [to_ns(v) for v in values], wrap

    def ident(p, array=False):
        return p
    if kind in ("int", "float"):
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            return "Int64", [int(v) for v in values], ident
        if all(isinstance(v, (int, float, np.number)) for v in values):
            return "Float64", [float(v) for v in values], ident
    return "String", [str(v) for v in values], ident

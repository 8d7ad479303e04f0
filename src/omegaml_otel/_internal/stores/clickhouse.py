"""ClickHouseStore: the exporter's ClickHouse tables through ``clickhouse-connect``.

URLs: ``clickhouse://user:pass@host:8123/otel`` (HTTP), ``clickhouses://…`` or ``?secure=1`` (HTTPS), and
``chdb:///abs/path`` (the embedded engine, same client; ``?database=otel``). Credentials come from the URL, else
from ``CLICKHOUSE_USER``/``CLICKHOUSE_PASSWORD``; the password never appears in ``url``, errors or logs.

Every value reaches the server as a typed bound parameter (``{p0:String}``); identifiers come from the logical
schema only. The table layout is read from ``system.columns``, so both exporter layouts are read: logs with or
without ``TimestampTime``, metric times as ``DateTime64(9)`` or ``DateTime`` (seconds: written truncated). The same
probe, with ``system.tables`` and ``system.data_skipping_indices``, gives ``schema_status()`` the live side of an
upgrade plan (``clickhouse_ddl.plan_upgrade``).
"""
from __future__ import annotations

import json
import numbers
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlsplit

from omegaml_otel._internal.secure import mask_url
from omegaml_otel._internal.stores import schema
from omegaml_otel._internal.stores.base import COMPARISONS, Cond, MapKey, Store, StoreError, to_ns
from omegaml_otel._internal.stores.clickhouse_ddl import (
    IDENT,
    SCHEMA_VERSION,
    VERSION_TABLE,
    LiveSchema,
    SchemaStatus,
    ddl_sha256,
    plan_upgrade,
    quote_ident,
    render_ddl,
)
from omegaml_otel._internal.stores.plan import Column, Filter, KeyBound, QueryPlan, SqlDialect
from omegaml_otel.settings import settings

if TYPE_CHECKING:  # readers only: a worker that writes ClickHouse never loads pandas here (lean workers)
    import pandas as pd

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
        self._upgraded = False  # the embedded engine's tables were created or upgraded by this store
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
        """{table: {column: type}} for the tables of the logical schema that exist. The embedded engine (chdb) gets
        the tables it lacks, or all of them, as SQLite does; a server is changed by ``omtel schema apply`` only."""
        if self._layout is None:
            live = self._live_schema()
            layout = {t: live.columns[t] for t in schema.TABLES if t in live.columns}
            if len(layout) < len(schema.TABLES) and self._create and self.scheme == "chdb" and not self._upgraded:
                self._upgraded = True  # once: a DDL that lacks a logical table must not loop
                self.apply_schema()
                return self._describe()
            self._layout = layout
        return self._layout

    def _live_schema(self) -> LiveSchema:
        """What the database holds now, in four queries of the system tables (a reader may run them)."""
        client = self._conn()
        p = {"db": self.database}
        try:
            exists = bool(client.query("SELECT 1 FROM system.databases WHERE name = {db:String}",
                                       parameters=p).result_rows)
            tables = {r[0]: {} for r in client.query("SELECT name FROM system.tables WHERE database = {db:String}",
                                                     parameters=p).result_rows}
            for table, name, ch_type in client.query(
                    "SELECT table, name, type FROM system.columns WHERE database = {db:String} ORDER BY position",
                    parameters=p).result_rows:
                tables.setdefault(table, {})[name] = ch_type
            indexes: dict[str, set[str]] = {}
            for table, name in client.query(
                    "SELECT table, name FROM system.data_skipping_indices WHERE database = {db:String}",
                    parameters=p).result_rows:
                indexes.setdefault(table, set()).add(name)
        except Exception as exc:
            raise StoreError(f"cannot read the layout of store {self.url}: {self._clean(exc)}") from None
        return LiveSchema(exists, tables, indexes)

    def _table(self, table: str) -> dict[str, str]:
        if table not in schema.TABLES:
            raise ValueError(f"unknown table {table!r}; use one of {', '.join(schema.TABLES)}")
        with self._lock:
            layout = self._describe()
        if table not in layout:
            raise StoreError(f"store {self.url} has no table {self.database}.{table}; create the tables with "
                             f"`omtel schema apply --store URL --database {self.database}`")
        return layout[table]

    def schema_status(self, ttl_days: int | None = None, cluster: str | None = None) -> SchemaStatus:
        """How this database differs from the package's DDL (``collector-config/clickhouse/schema.sql``): the
        statements ``apply_schema`` would run, and the version last recorded. Reads only; the reader user may ask.
        With ``cluster``, this node's tables are compared with the cluster variant."""
        stmts = render_ddl(self.database, ttl_days, cluster=cluster)
        with self._lock:
            live = self._live_schema()
            steps, notes = plan_upgrade(stmts, live, cluster)
            recorded = None
            if VERSION_TABLE in live.columns:
                try:
                    rows = self._conn().query(f"SELECT max(Version) FROM {self.database}.{VERSION_TABLE}").result_rows
                except Exception as exc:
                    raise StoreError(f"cannot read the schema version of store {self.url}: {self._clean(exc)}") \
                        from None
                recorded = int(rows[0][0]) or None  # max() of no rows is 0: nothing recorded
        return SchemaStatus(self.database, recorded, SCHEMA_VERSION, steps, notes)

    def apply_schema(self, ttl_days: int | None = None, cluster: str | None = None) -> list[str]:
        """Create or upgrade the database in place: what ``schema_status`` lists (new tables, ``ADD COLUMN``,
        ``ADD INDEX``; never a drop), on every node of ``cluster`` if given (replicated local tables + Distributed
        tables, see ``render_ddl``). Records the version when anything changed; returns the statements run, so a
        second call returns ``[]``."""
        status = self.schema_status(ttl_days, cluster)
        if status.recorded is not None and status.recorded > SCHEMA_VERSION:
            raise StoreError(f"store {self.url} database {self.database} has schema version {status.recorded}, newer "
                             f"than this omegaml-otel writes ({SCHEMA_VERSION}); upgrade omegaml-otel")
        if status.up_to_date:
            return []
        stmts = [step.statement for step in status.steps]
        with self._lock:
            client = self._conn()
            try:
                for stmt in stmts:
                    client.command(stmt)
                client.insert(f"{self.database}.{VERSION_TABLE}",
                              [[SCHEMA_VERSION, datetime.now(timezone.utc), ddl_sha256(), stmts]],
                              column_names=["Version", "AppliedAt", "DdlSha256", "Statements"])
            except Exception as exc:
                raise StoreError(f"cannot apply the schema to store {self.url}: {self._clean(exc)}; the user "
                                 "needs CREATE and ALTER rights (use the admin user, not the reader)") from None
            finally:
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
        # readers only: a worker that writes ClickHouse never loads pandas here (lean workers)
        from omegaml_otel._internal.stores.clickhouse_frames import ARROW_SETTINGS, arrow_to_frame, to_frame, uses_arrow

        sql, params = self._render(plan)
        arrow = uses_arrow(plan)
        with self._lock:
            try:
                client = self._conn()
                raw = (client.query_arrow(sql, parameters=params, settings=ARROW_SETTINGS) if arrow
                       else client.query_df(sql, parameters=params))
            except Exception as exc:
                raise StoreError(f"cannot read store {self.url}: {self._clean(exc)}") from None
        return arrow_to_frame(raw, plan, python_strings) if arrow else to_frame(raw, plan, python_strings)

    def rows(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey],
             limit: int | None = None, descending: bool = False) -> list[tuple]:
        sql, params = self._render(QueryPlan.build(table, conds=conds, columns=columns, limit=limit,
                                                   descending=descending))
        with self._lock:
            try:
                return [tuple(r) for r in self._conn().query(sql, parameters=params).result_rows]
            except Exception as exc:
                raise StoreError(f"cannot read store {self.url}: {self._clean(exc)}") from None

    def _render(self, plan: QueryPlan) -> tuple[str, dict]:
        source = f"{self.database}.{plan.table}"
        dialect = _ClickHouseDialect(self._table(plan.table), self, source)
        return dialect.render(plan, source), dialect.params

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
            # as a dictionary in the Arrow format: an attribute holds few distinct values (hosts, level numbers,
            # run ids), each made a Python string once (clickhouse_frames.ARROW_SETTINGS)
            return (f"toLowCardinality(if(mapContains({_q(column.column)}, {key}), {_q(column.column)}[{key}], NULL))"
                    f" AS c{index}")
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

    def key_condition(self, bound: KeyBound) -> str | None:
        if bound.column not in self._layout:  # the v0.151+ logs layout: keyed on Timestamp itself
            return None
        return f"({_q(bound.column)} {COMPARISONS[bound.op]} toDateTime({self.bind(bound.seconds, 'UInt32')}))"


def _param_type(kind: str, values: list):
    if kind == "time":
        def wrap(p, array=False):
            return f"arrayMap(x -> fromUnixTimestamp64Nano(x), {p})" if array else f"fromUnixTimestamp64Nano({p})"
        return "Int64", [to_ns(v) for v in values], wrap

    def ident(p, array=False):
        return p
    if kind in ("int", "float"):
        # numpy's integers and floats register as numbers.Integral and numbers.Real: no numpy import needed
        if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            return "Int64", [int(v) for v in values], ident
        if all(isinstance(v, numbers.Real) for v in values):
            return "Float64", [float(v) for v in values], ident
    return "String", [str(v) for v in values], ident

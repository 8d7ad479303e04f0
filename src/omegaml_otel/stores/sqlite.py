"""SqliteStore: the embedded default, safe for many writer processes.

WAL journaling with ``BEGIN IMMEDIATE`` batches lets worker children, clients and the CLI write one file at once
without "database is locked" errors (platform-notes §7). Attribute maps are JSON text; times are integer
nanoseconds, so nothing is lost against ClickHouse's DateTime64(9).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from omegaml_otel.stores import schema
from omegaml_otel.stores.base import Cond, MapKey, Store, StoreError, to_ns

SCHEMA_VERSION = 2
_SQL_TYPE = {"time": "INTEGER", "int": "INTEGER", "float": "REAL", "str": "TEXT", "map": "TEXT", "list": "TEXT"}
#: (index name, columns) per table. otel_logs has no TraceId index: it cost a fifth of every log write, and
#: log-to-span joins start from the (indexed) spans.
_INDEXES = {
    schema.LOGS: [("otel_logs_idx0", "Timestamp"), ("otel_logs_scope_ts", "ScopeName, Timestamp")],
    schema.TRACES: [("otel_traces_idx0", "Timestamp"), ("otel_traces_idx1", "TraceId"),
                    ("otel_traces_idx2", "SpanName, Timestamp")],
    schema.GAUGE: [("otel_metrics_gauge_idx0", "TimeUnix"), ("otel_metrics_gauge_idx1", "MetricName, TimeUnix")],
    schema.SUM: [("otel_metrics_sum_idx0", "TimeUnix"), ("otel_metrics_sum_idx1", "MetricName, TimeUnix")],
    schema.HISTOGRAM: [("otel_metrics_histogram_idx0", "TimeUnix"),
                       ("otel_metrics_histogram_idx1", "MetricName, TimeUnix")],
}
#: ordered migrations; entry i brings the schema from version i+1 to i+2
_MIGRATIONS: list[list[str]] = [
    # 1 -> 2: drop the TraceId index of otel_logs; (ScopeName, Timestamp) gets a name that says what it is
    ["DROP INDEX IF EXISTS otel_logs_idx1", "DROP INDEX IF EXISTS otel_logs_idx2",
     'CREATE INDEX IF NOT EXISTS otel_logs_scope_ts ON otel_logs ("ScopeName", "Timestamp")'],
]
_OPS = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ddl() -> list[str]:
    stmts = []
    for table, cols in schema.TABLES.items():
        body = ", ".join(f"{_q(c)} {_SQL_TYPE[k]}" for c, k in cols)
        stmts.append(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
        for name, idx in _INDEXES[table]:
            cols_sql = ", ".join(_q(c.strip()) for c in idx.split(","))
            stmts.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols_sql})")
    return stmts


class SqliteStore(Store):
    def __init__(self, path: str | Path, *, create: bool = True, url: str | None = None):
        self.path = Path(path)
        self.url = url or f"sqlite://{self.path}"
        self._create = create
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = None
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # the parent's lock may have been held at fork time; its connection is left to the parent
        self._lock = threading.RLock()
        self._conn = None

    # -- connection ---------------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        # a connection must never cross a fork: children open their own
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        fix = ("set OMTEL_HOME to a writable folder, or OMTEL_STORE to a writable sqlite:///path")
        if not self.path.exists() and not self._create:
            raise StoreError(f"store {self.url} does not exist; run a task or log a message first, or {fix}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._migrate(conn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StoreError(f"store {self.url} stayed locked by another process for 30 s: {exc}") from exc
            raise StoreError(f"cannot open store {self.url}: {exc}; {fix}") from exc
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {self.url}: {exc}; {fix}") from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS omtel_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM omtel_schema").fetchone()
        version = row[0]
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("SELECT max(version) FROM omtel_schema").fetchone()[0]
            if version == SCHEMA_VERSION:  # another process created or migrated it meanwhile
                pass
            elif version is None:
                for stmt in ddl():
                    conn.execute(stmt)
                conn.execute("INSERT INTO omtel_schema VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise StoreError(f"store {self.url} has schema version {version}, newer than this omegaml-otel "
                                 f"understands ({SCHEMA_VERSION}); upgrade omegaml-otel")
            else:
                for step in _MIGRATIONS[version - 1:]:
                    for stmt in step:
                        conn.execute(stmt)
                for stmt in ddl():  # tables and indexes a later version added ('IF NOT EXISTS')
                    conn.execute(stmt)
                conn.execute("INSERT INTO omtel_schema VALUES (?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT max(version) FROM omtel_schema").fetchone()[0]

    # -- write --------------------------------------------------------------------------------------------------
    def write(self, table: str, rows: Sequence[tuple]) -> None:
        if not rows:
            return
        cols = schema.columns(table)
        sql = f"INSERT INTO {table} ({', '.join(map(_q, cols))}) VALUES ({', '.join('?' * len(cols))})"
        with self._lock:
            conn = self._connection()
            for attempt in range(5):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.executemany(sql, rows)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    return
                except sqlite3.OperationalError as exc:
                    # busy_timeout already waited 30 s; a few more tries cover pathological checkpoint stalls
                    if "locked" not in str(exc) or attempt == 4:
                        raise StoreError(f"cannot write to store {self.url}: {exc}") from exc
                    time.sleep(0.05 * (attempt + 1))

    # -- read ---------------------------------------------------------------------------------------------------
    def query(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey] | None = None,
              since: datetime | int | None = None, until: datetime | int | None = None,
              limit: int | None = None, descending: bool = False, python_strings: bool = False) -> pd.DataFrame:
        if table not in schema.TABLES:
            raise ValueError(f"unknown table {table!r}; use one of {', '.join(schema.TABLES)}")
        tcol = schema.TIME_COLUMN[table]
        selected = list(columns) if columns is not None else schema.columns(table)
        exprs, labels, kinds = [], [], []
        params: list = []
        for c in selected:
            if isinstance(c, MapKey):
                schema.check_column(table, c.column, "map")
                exprs.append(f"json_extract({_q(c.column)}, ?)")
                params.append(_json_path(c.key))
                labels.append(c.label)
                kinds.append("str")
            else:
                exprs.append(_q(c))
                labels.append(c)
                kinds.append(schema.check_column(table, c))
        where: list[str] = []
        if since is not None:
            where.append(f"{_q(tcol)} >= ?")
            params.append(to_ns(since))
        if until is not None:
            where.append(f"{_q(tcol)} <= ?")
            params.append(to_ns(until))
        for cond in conds:
            sql, p = _cond_sql(table, cond)
            where.append(sql)
            params.extend(p)
        sql = f"SELECT {', '.join(exprs)} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {_q(tcol)} {'DESC' if descending else 'ASC'}, rowid {'DESC' if descending else 'ASC'}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            try:
                rows = self._connection().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read store {self.url}: {exc}") from exc
        if python_strings and rows:  # no type inference: strings stay the str objects sqlite3 made
            df = pd.DataFrame(rows, columns=labels, dtype=object)
        else:
            df = pd.DataFrame.from_records(rows, columns=labels, coerce_float=False, nrows=len(rows))
        for label, k in zip(labels, kinds):
            if k in ("int", "float", "time") and df[label].dtype == object and len(df):
                df[label] = df[label].astype("float64" if k == "float" else "int64")
            if k == "time":
                df[label] = pd.to_datetime(df[label], unit="ns")
            elif k in ("map", "list"):
                df[label] = pd.Series([json.loads(v) if v else ({} if k == "map" else []) for v in df[label]],
                                      index=df.index, dtype=object)  # object also when empty, as ClickHouse
        return df

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _retry_locked(call, timeout: float = 30.0):
    """Switching a fresh file to WAL fails at once (no busy wait) while another process does the same."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _json_path(key: str) -> str:
    if '"' in key or "\\" in key:
        raise ValueError(f"attribute key {key!r} may not contain quotes or backslashes")
    return f'$."{key}"'


def _cond_sql(table: str, cond: Cond) -> tuple[str, list]:
    if cond.key is not None:
        schema.check_column(table, cond.column, "map")
        lhs, params = f"json_extract({_q(cond.column)}, ?)", [_json_path(cond.key)]
        value = cond.value
        value = [str(v) for v in value] if cond.op == "in" else str(value)
    else:
        k = schema.check_column(table, cond.column)
        lhs, params, value = _q(cond.column), [], cond.value
        if k == "time":
            value = [to_ns(v) for v in value] if cond.op == "in" else to_ns(value)
    if cond.op in _OPS:
        return f"{lhs} {_OPS[cond.op]} ?", params + [value]
    if cond.op == "in":
        values = list(value)
        if not values:
            return "0", []
        return f"{lhs} IN ({', '.join('?' * len(values))})", params + values
    if cond.op == "contains":
        return f"instr({lhs}, ?) > 0", params + [str(value)]
    if cond.op == "startswith":
        return f"substr({lhs}, 1, ?) = ?", params + [len(str(value)), str(value)]
    raise ValueError(cond.op)

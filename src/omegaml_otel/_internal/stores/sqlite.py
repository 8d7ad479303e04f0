"""SqliteStore: the embedded default, safe for many writer processes.

WAL journaling with ``BEGIN IMMEDIATE`` batches lets worker children, clients and the CLI write one file at once
without "database is locked" errors (a plain ``BEGIN`` upgrades to a write lock mid-transaction and fails at
once instead of waiting). Attribute maps are JSON text; times are integer
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

from omegaml_otel._internal import deadline
from omegaml_otel._internal.secure import private_dir, private_file
from omegaml_otel._internal.stores import schema
from omegaml_otel._internal.stores.base import COMPARISONS, Cond, MapKey, Store, StoreError
from omegaml_otel._internal.stores.plan import Column, Filter, QueryPlan, SqlDialect

SCHEMA_VERSION = 2
#: seconds a write waits for another process's write lock, unless its caller has less time (_internal/deadline.py)
BUSY_TIMEOUT = 30.0
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
        self._busy_ms = 0  # the connection's busy timeout
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # the parent's lock may have been held at fork time; its connection is left to the parent
        self._lock = threading.RLock()
        self._conn = None

    # -- connection ---------------------------------------------------------------------------------------------
    def _connection(self, wait: float = BUSY_TIMEOUT) -> sqlite3.Connection:
        # a connection must never cross a fork: children open their own
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open(wait)
            self._pid = os.getpid()
            self._busy_ms = int(wait * 1000)
        return self._conn

    def _busy_timeout(self, conn: sqlite3.Connection, seconds: float) -> None:
        ms = max(0, int(seconds * 1000))
        if ms != self._busy_ms:
            conn.execute(f"PRAGMA busy_timeout={ms}")
            self._busy_ms = ms

    def _open(self, wait: float) -> sqlite3.Connection:
        fix = ("set OMTEL_HOME to a writable folder, or OMTEL_STORE to a writable sqlite:///path")
        if not self.path.exists() and not self._create:
            raise StoreError(f"store {self.url} does not exist; run a task or log a message first, or {fix}")
        try:
            private_file(private_dir(self.path.parent) / self.path.name)  # 0600; -wal and -shm take its mode
            conn = sqlite3.connect(self.path, timeout=wait, isolation_level=None, check_same_thread=False)
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"), wait)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate(conn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StoreError(f"store {self.url} stayed locked by another process for {wait:.1f} s: {exc}") from exc
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
        """One transaction. It waits for another process's write lock up to the busy timeout, or for as long as
        its caller has left (a flush before a task result, an exiting process: ``deadline``)."""
        if not rows:
            return
        cols = schema.columns(table)
        sql = f"INSERT INTO {table} ({', '.join(map(_q, cols))}) VALUES ({', '.join('?' * len(cols))})"
        wait = deadline.remaining(BUSY_TIMEOUT)
        ends = time.monotonic() + wait
        if not self._lock.acquire(timeout=wait):
            raise StoreError(f"cannot write to store {self.url}: another write of this process took over "
                             f"{wait:.1f} s")
        try:
            conn = self._connection(wait)
            for attempt in range(5):
                self._busy_timeout(conn, BUSY_TIMEOUT if wait == BUSY_TIMEOUT and not attempt
                                   else ends - time.monotonic())
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
                    # the busy wait is over; a few more tries cover pathological checkpoint stalls
                    if "locked" not in str(exc):
                        raise StoreError(f"cannot write to store {self.url}: {exc}") from exc
                    if attempt == 4 or time.monotonic() >= ends:
                        raise StoreError(f"cannot write to store {self.url}: another process held it locked for "
                                         f"{wait:.1f} s ({exc})") from exc
                    time.sleep(min(0.05 * (attempt + 1), max(0.0, ends - time.monotonic())))
                except sqlite3.Error as exc:  # e.g. a corrupt page: 'database disk image is malformed'
                    raise StoreError(f"cannot write to store {self.url}: {exc}") from exc
        finally:
            if self._conn is not None and self._busy_ms != int(BUSY_TIMEOUT * 1000):
                self._busy_timeout(self._conn, BUSY_TIMEOUT)  # reads of this connection keep the full wait
            self._lock.release()

    # -- read ---------------------------------------------------------------------------------------------------
    def query(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey] | None = None,
              since: datetime | int | None = None, until: datetime | int | None = None,
              limit: int | None = None, descending: bool = False, python_strings: bool = False) -> pd.DataFrame:
        plan = QueryPlan.build(table, conds=conds, columns=columns, since=since, until=until, limit=limit,
                               descending=descending)
        dialect = _SqliteDialect()
        sql = dialect.render(plan, table)
        with self._lock:
            try:
                rows = self._connection().execute(sql, dialect.params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read store {self.url}: {exc}") from exc
        labels = plan.labels
        if python_strings and rows:  # no type inference: strings stay the str objects sqlite3 made
            df = pd.DataFrame(rows, columns=labels, dtype=object)
        else:
            df = pd.DataFrame.from_records(rows, columns=labels, coerce_float=False, nrows=len(rows))
        for c in plan.columns:
            label, k = c.label, c.kind
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


class _SqliteDialect(SqlDialect):
    """Positional ``?`` parameters; attribute maps are JSON text read with ``json_extract``."""

    def __init__(self):
        self.params: list = []

    def quote(self, name: str) -> str:
        return _q(name)

    def bind(self, value, type_: str) -> str:
        self.params.append(value)
        return "?"

    def _lhs(self, column: str, key: str | None) -> str:
        if key is None:
            return _q(column)
        return f"json_extract({_q(column)}, {self.bind(_json_path(key), 'String')})"

    def column(self, column: Column, index: int) -> str:
        return self._lhs(column.column, column.key)

    def condition(self, f: Filter) -> str:
        if f.op == "in" and not f.value:
            return "0"  # bind nothing: a placeholder without its text would shift every later parameter
        lhs = self._lhs(f.column, f.key)
        if f.op in COMPARISONS:
            return f"{lhs} {COMPARISONS[f.op]} {self.bind(f.value, '')}"
        if f.op == "in":
            return f"{lhs} IN ({', '.join(self.bind(v, '') for v in f.value)})"
        text = str(f.value)
        if f.op == "contains":
            return f"instr({lhs}, {self.bind(text, '')}) > 0"
        return f"substr({lhs}, 1, {self.bind(len(text), '')}) = {self.bind(text, '')}"

    def order(self, plan: QueryPlan) -> str:
        direction = "DESC" if plan.descending else "ASC"
        return f"{_q(plan.time_column)} {direction}, rowid {direction}"

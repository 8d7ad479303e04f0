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
from typing import TYPE_CHECKING

from omegaml_otel._internal import deadline
from omegaml_otel._internal.secure import private_dir, private_file
from omegaml_otel._internal.stores import retention as _retention
from omegaml_otel._internal.stores import schema
from omegaml_otel._internal.stores.base import COMPARISONS, Cond, MapKey, Store, StoreError
from omegaml_otel._internal.stores.plan import Column, Filter, QueryPlan, SqlDialect
from omegaml_otel._internal.stores.sqlite_sql import BUSY_TIMEOUT
from omegaml_otel._internal.stores.sqlite_sql import json_path as _json_path
from omegaml_otel._internal.stores.sqlite_sql import quote as _q
from omegaml_otel.conventions import EXPERIMENT

if TYPE_CHECKING:  # readers only: workers write rows and never load pandas (lean workers)
    import pandas as pd

SCHEMA_VERSION = 4
_FULL_WAIT_MS = int(BUSY_TIMEOUT * 1000)
#: WAL pages (estimated: ``_checkpoint_soon``) a writing process adds before it asks its checkpoint thread for one
CHECKPOINT_PAGES = 500
#: WAL pages past which a commit checkpoints itself: a backstop for when the checkpoint thread falls behind or the
#: estimate is far too low (SQLite's default is 1000 pages, 4 MB; this is 16 MB)
INLINE_CHECKPOINT_PAGES = 4000
#: page cache of a connection, KiB. SQLite's default (2 MiB) fills up in every writing process once its store is a
#: few MB: inserts into the TraceId and (ScopeName, Timestamp) indexes land all over them, and a pool child keeps
#: the pages until another process's write resets the cache, with its malloc'ed memory still dirty. The upper
#: pages of the b-trees a writer walks fit in 256 KiB: writes and reads took as long (section 12 of
#: docs/performance.md)
CACHE_KIB = 256
#: connections (and checkpointers, which hold one) a forked child inherited from its parent: kept, unused, so that
#: they are never closed in the child
_INHERITED: list[sqlite3.Connection | _Checkpointer] = []
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
    schema.EXP_HISTOGRAM: [("otel_metrics_exponential_histogram_idx0", "TimeUnix"),
                           ("otel_metrics_exponential_histogram_idx1", "MetricName, TimeUnix")],
    schema.SUMMARY: [("otel_metrics_summary_idx0", "TimeUnix"), ("otel_metrics_summary_idx1", "MetricName, TimeUnix")],
}
#: ordered migrations; entry i brings the schema from version i+1 to i+2
_MIGRATIONS: list[list[str]] = [
    # 1 -> 2: drop the TraceId index of otel_logs; (ScopeName, Timestamp) gets a name that says what it is
    ["DROP INDEX IF EXISTS otel_logs_idx1", "DROP INDEX IF EXISTS otel_logs_idx2",
     'CREATE INDEX IF NOT EXISTS otel_logs_scope_ts ON otel_logs ("ScopeName", "Timestamp")'],
    # 2 -> 3: the exponential-histogram and summary tables, which ddl() creates after the migrations
    [],
    # 3 -> 4: the experiment index of otel_logs (_experiment_index), which ddl() creates after the migrations
    [],
]


def ddl() -> list[str]:
    stmts = []
    for table, cols in schema.TABLES.items():
        body = ", ".join(f"{_q(c)} {_SQL_TYPE[k]}" for c, k in cols)
        stmts.append(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
        for name, idx in _INDEXES[table]:
            cols_sql = ", ".join(_q(c.strip()) for c in idx.split(","))
            stmts.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols_sql})")
    stmts.append(_experiment_index())
    return stmts


def _experiment_index() -> str:
    """An experiment's events by name and time: ``exp.data(run=...)``, its run and ``clear`` lookup and the declared
    provider have no time bound (``dt=`` can put an event at any time), so without it they read every experiment
    event of every experiment. Partial: only rows with the attribute are in it (log records cost one
    ``json_extract`` each on insert, about 0.5 us); the readers' ``json_extract(...) = ?`` implies the condition."""
    experiment = f"json_extract({_q('LogAttributes')}, {_json_path(EXPERIMENT)})"
    return (f"CREATE INDEX IF NOT EXISTS otel_logs_experiment_ts ON {schema.LOGS} ({experiment}, {_q('Timestamp')}) "
            f"WHERE {experiment} IS NOT NULL")


class SqliteStore(Store):
    def __init__(self, path: str | Path, *, create: bool = True, url: str | None = None,
                 retention: float | None = None):
        self.path = Path(path)
        #: seconds rows are kept (OMTEL_RETENTION), applied by a background thread of each writing process
        self.retention = retention
        self._retention_pid: int | None = None
        self._retention_thread: _retention.RetentionThread | None = None
        self.url = url or f"sqlite://{self.path}"
        self._create = create
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = None
        self._busy_ms = 0  # the connection's busy timeout
        self._held_for_fork = False
        self._checkpointer: _Checkpointer | None = None
        self._pages_written = 0  # WAL pages (estimated) this process added since it last asked for a checkpoint
        os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork_in_parent,
                            after_in_child=self._after_fork)

    def _before_fork(self) -> None:
        # no transaction of this process may be under way at a fork: SQLite's in-process lock bookkeeping is
        # copied into the child, which would then find the file locked by a connection that is not there, forever
        # (Celery forks its pool while the main process's export thread writes its start-up records)
        self._held_for_fork = self._lock.acquire(timeout=BUSY_TIMEOUT)
        if self._checkpointer is not None:
            self._checkpointer.hold_for_fork()

    def _after_fork_in_parent(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.release_after_fork()
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()

    def _after_fork(self) -> None:
        # the parent's lock may have been held at fork time; its connection is left to the parent, and never closed
        # here: closing it in the child (what dropping the last reference does) upsets the WAL's shared locks
        self._lock = threading.RLock()
        self._held_for_fork = False
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = None
        if self._checkpointer is not None:  # its thread stayed in the parent; its connection is the parent's
            _INHERITED.append(self._checkpointer)
        self._checkpointer = None
        self._pages_written = 0

    # -- connection ---------------------------------------------------------------------------------------------
    def _connection(self, wait: float | None = None) -> sqlite3.Connection:
        """This process's connection (a connection must never cross a fork: children open their own). A write
        passes the time it may wait and then sets its own busy timeout (``_wait_at_most``); without ``wait`` (a
        read) the connection has the full ``BUSY_TIMEOUT``, restored here when the last write set less."""
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open(BUSY_TIMEOUT if wait is None else wait)
            self._pid = os.getpid()
            self._busy_ms = int((BUSY_TIMEOUT if wait is None else wait) * 1000)
        elif wait is None and self._busy_ms != _FULL_WAIT_MS:
            self._conn.execute(f"PRAGMA busy_timeout={_FULL_WAIT_MS}")
            self._busy_ms = _FULL_WAIT_MS
        return self._conn

    def _wait_at_most(self, conn: sqlite3.Connection, seconds: float) -> None:
        """Cap SQLite's busy wait at ``seconds``. A busy timeout already set is kept while it is within the cap and
        less than 10 % below it (the write may give up that much earlier): flushes under the same bound, one
        before each task result, then set it once instead of twice per write (section 13 of docs/performance.md)."""
        ms = max(0, int(seconds * 1000))
        if not ms - ms // 10 <= self._busy_ms <= ms:
            conn.execute(f"PRAGMA busy_timeout={ms}")
            self._busy_ms = ms

    def _open(self, wait: float) -> sqlite3.Connection:
        fix = ("set OMTEL_HOME to a writable folder, or OMTEL_STORE to a writable sqlite:///path")
        if not self.path.exists() and not self._create:
            raise StoreError(f"store {self.url} does not exist; run a task or log a message first, or {fix}")
        try:
            private_file(private_dir(self.path.parent) / self.path.name)  # 0600; -wal and -shm take its mode
            conn = sqlite3.connect(self.path, timeout=wait, isolation_level=None, check_same_thread=False)
            # before WAL and the first table, or it has no effect: lets retention give pages back (retention.py)
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"), wait)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint={INLINE_CHECKPOINT_PAGES}")  # the checkpoint thread's job
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
        if self.retention is not None and self._retention_pid != os.getpid():
            self._start_retention()
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
                self._wait_at_most(conn, BUSY_TIMEOUT if wait == BUSY_TIMEOUT and not attempt
                                   else ends - time.monotonic())
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.executemany(sql, rows)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    self._checkpoint_soon(table, len(rows))
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
            self._lock.release()

    def _checkpoint_soon(self, table: str, rows: int) -> None:
        """Ask this process's checkpoint thread for a checkpoint once the commits since the last request added
        about CHECKPOINT_PAGES pages to the WAL: a commit writes the table's and each index's last page, and a
        page holds a few rows."""
        self._pages_written += 1 + len(_INDEXES[table]) + rows // 4
        if self._pages_written >= CHECKPOINT_PAGES:
            self._pages_written = 0
            if self._checkpointer is None:
                self._checkpointer = _Checkpointer(self.path)
            self._checkpointer.request()

    # -- read ---------------------------------------------------------------------------------------------------
    def query(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey] | None = None,
              since: datetime | int | None = None, until: datetime | int | None = None,
              limit: int | None = None, descending: bool = False, python_strings: bool = False) -> pd.DataFrame:
        import pandas as pd  # readers only: workers never load pandas (lean workers)

        plan = QueryPlan.build(table, conds=conds, columns=columns, since=since, until=until, limit=limit,
                               descending=descending)
        rows = self._fetch(plan)
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

    def rows(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey],
             limit: int | None = None, descending: bool = False) -> list[tuple]:
        return self._fetch(QueryPlan.build(table, conds=conds, columns=columns, limit=limit, descending=descending))

    def _fetch(self, plan: QueryPlan) -> list[tuple]:
        dialect = _SqliteDialect()
        sql = dialect.render(plan, plan.table)
        with self._lock:
            try:
                return self._connection().execute(sql, dialect.params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read store {self.url}: {exc}") from exc

    # -- retention (stores/retention.py) -------------------------------------------------------------------------
    def _start_retention(self) -> None:
        """Once per process (a thread does not survive a fork): the background pass of OMTEL_RETENTION."""
        self._retention_pid = os.getpid()
        self._retention_thread = _retention.RetentionThread(self.path, self.retention).start()

    def _retention_call(self, call, *args, **kwargs):
        """``call(connection, ...)`` on a connection of its own, after the store exists at the current schema."""
        self.schema_version()
        conn = _retention.connect(self.path)
        try:
            return call(conn, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot apply retention (prune, pin, vacuum) to store {self.url}: {exc}") from exc
        finally:
            conn.close()

    def prune(self, older_than: float, *, pause: float = 0.0) -> _retention.PruneResult:
        """Delete rows older than ``older_than`` seconds, except pinned runs, the log dataset window and experiment
        bookkeeping (see stores/retention.py), in short batches that let writers in; then give the space back."""
        cutoff = time.time_ns() - int(older_than * 1e9)
        return self._retention_call(_retention.prune, cutoff, pause=pause, path=self.path)

    def vacuum(self) -> None:
        """Rewrite the store once so that prunes give space back (stores created before auto_vacuum=INCREMENTAL)."""
        self._retention_call(_retention.vacuum)

    def pin(self, run_ids: Iterable[str], experiment: str) -> None:
        self._retention_call(_retention.pin, list(run_ids), experiment)

    def unpin(self, run_ids: Iterable[str]) -> int:
        return self._retention_call(_retention.unpin, list(run_ids))

    def pins(self) -> list[tuple[str, str, int]]:
        return self._retention_call(_retention.pins)

    def close(self) -> None:
        if self._retention_thread is not None and self._retention_pid == os.getpid():
            self._retention_thread.stop()
            self._retention_thread = self._retention_pid = None  # a later write starts it again
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None


class _Checkpointer:
    """A writing process's WAL checkpoints, made by a daemon thread on a connection of its own.

    With SQLite's default, the commit that takes the WAL past 1000 pages copies them into the database and syncs
    both files itself: about 1 % of the flushes before a task's result took 2 to 15 ms instead of 0.12 (section 13
    of docs/performance.md). Here writes only ask (``request``) and this thread checkpoints PASSIVE, which neither
    waits for nor blocks a writer or reader; a commit checkpoints itself only past INLINE_CHECKPOINT_PAGES."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()  # held while checkpointing, and by the store across a fork
        self._held = False
        self._due = threading.Event()
        self._stopped = False
        self._conn: sqlite3.Connection | None = None
        threading.Thread(target=self._run, name="omtel-checkpoint", daemon=True).start()

    def request(self) -> None:
        self._due.set()

    def stop(self) -> None:
        self._stopped = True
        self._due.set()

    def hold_for_fork(self) -> None:
        """No checkpoint may be under way at a fork (SQLite's lock bookkeeping would be copied mid-way; see
        ``SqliteStore._before_fork``). A checkpoint is a few milliseconds of I/O."""
        self._held = self._lock.acquire(timeout=BUSY_TIMEOUT)

    def release_after_fork(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            with self._lock:
                if self._stopped:
                    if self._conn is not None:
                        self._conn.close()
                    return
                try:
                    if self._conn is None:
                        self._conn = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                                                     check_same_thread=False)
                    copied = -1
                    for _ in range(8):
                        busy, log, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        # the WAL starts over (and stops growing) only at a write that finds every page copied:
                        # pages committed while a pass copied are copied by the next, shorter one
                        if busy or done == copied:
                            break
                        copied = done
                except sqlite3.Error:
                    # another process is checkpointing, or the file is gone: the next request tries again, and a
                    # commit past INLINE_CHECKPOINT_PAGES checkpoints itself, so the WAL never grows unbounded
                    pass


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
        return f"json_extract({_q(column)}, {_json_path(key)})"

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

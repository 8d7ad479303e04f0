"""Retention of the embedded SQLite store: old rows go in small batches; pinned runs and the log dataset window stay.

A ClickHouse store ages out with a table TTL (``omtel schema apply --ttl-days``); this module is SQLite's
counterpart. A row goes when its own time (``Timestamp``, ``TimeUnix``) is older than the cutoff, unless it is one
of these, whatever its age:

- a row of the current **log dataset window**: a record of a dataset (``LogAttributes['omegaml.log.dataset']``) from
  that dataset's latest reset record on. ``om.logger.dataset.get()`` shows exactly these rows
  (``compat/logger.LogDataset._window_start`` is the reader's side of the same rule), so retention never changes
  what it returns. A dataset that was never reset keeps all its records: ``om.logger.reset()`` starts a new window
  and lets the earlier records age out;
- a row of a **pinned run**: every row of the run's trace (``TraceId`` = the run id) and every row tagged with its
  run id (``omegaml.run.id``: events, task records, profiling samples). Pins are rows of ``omtel_pins`` in the
  store file itself, so they travel with it and a prune reads them in the same transaction as each delete;
- an experiment's **bookkeeping events** (its declaration, ``clear`` and each run's ``start``): one row per run,
  they keep run numbers, the declared provider and ``clear()`` as they were.

Deletes run in batches of ``BATCH`` rows, each its own short ``BEGIN IMMEDIATE`` transaction, with a pause after
each at least as long as the batch took: SQLite has one write lock, and writers of other processes then wait
milliseconds for it, not the length of a prune. Deleted pages go on SQLite's free list and later writes reuse them,
so a store under retention stops growing. Stores created with ``auto_vacuum=INCREMENTAL`` (every store this
package creates) also give those pages back to the file system (``reclaim``); an older store needs one full
``vacuum()`` (``omtel prune --vacuum``) to switch, which rewrites the file while writers wait.

In the background, ``RetentionThread`` runs a pass at most once per ``PASS_EVERY`` seconds for each store file,
across all processes: a non-blocking ``flock`` on ``<store>.retention`` picks one process, and that file's mtime
records when the last pass ended.
"""
from __future__ import annotations

import fcntl
import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from omegaml_otel._internal.secure import private_file
from omegaml_otel._internal.stores import schema
from omegaml_otel._internal.stores.sqlite_sql import BUSY_TIMEOUT, json_path
from omegaml_otel._internal.stores.sqlite_sql import quote as _q
from omegaml_otel.conventions import DATASET, EVENT, EXPERIMENT_SCOPE, LOG_RESET, RUN, SYSTEM_LOGGER, Event

#: the table of pinned runs (not part of the telemetry schema: it exists only in SQLite stores)
PINS = "omtel_pins"
#: rows per delete transaction: about 15-20 ms of holding the write lock (benchmarks/bench_retention.py)
BATCH = 1000
#: pages given back to the file system per transaction (2 MiB of 4 KiB pages)
RECLAIM_PAGES = 512
#: seconds between background passes over one store file, across all processes that write it
PASS_EVERY = 3600.0
#: seconds between a background thread's checks whether a pass is due
CHECK_EVERY = 300.0
#: seconds before a background thread's first check: short scripts that write a few records never prune
FIRST_CHECK = 60.0
#: experiment events kept whatever their age: the declaration, clear() and each run's start
BOOKKEEPING_EVENTS = (Event.DECLARED, Event.CLEAR, Event.START)
#: the attribute map of each table that carries the run id (the first one a table has)
_ATTRIBUTE_MAPS = ("LogAttributes", "SpanAttributes", "Attributes")


@dataclass
class PruneResult:
    """What one prune did: rows deleted per table, and the store file's size before and after."""

    cutoff_ns: int
    deleted: dict[str, int] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0
    #: whether freed pages went back to the file system (auto_vacuum=INCREMENTAL); else later writes reuse them
    reclaimed: bool = False
    pinned_runs: int = 0
    #: dataset name -> start of its current window (ns); datasets never reset keep every record
    windows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _attr(column: str, key: str) -> str:
    """The SQL of ``column[key]``; ``nullif`` because json_extract('') is an error, not NULL."""
    return f"json_extract(nullif({_q(column)}, ''), {json_path(key)})"


def connect(path: str | os.PathLike, busy_timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """A connection of retention's own: it never shares the writers' connection, nor their lock."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_size_limit=67108864")  # a big prune's WAL shrinks back to 64 MiB after checkpoints
    return conn


def file_bytes(path: str | os.PathLike) -> int:
    """The store's size on disk: the database file and its write-ahead log."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(f"{path}{suffix}")
        except OSError:
            pass
    return total


# -- pins --------------------------------------------------------------------------------------------------------
def _ensure_pins(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {PINS} (run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, "
                 "pinned_ns INTEGER NOT NULL) WITHOUT ROWID")


def pin(conn: sqlite3.Connection, run_ids: Iterable[str], experiment: str) -> None:
    """Keep every row of these runs whatever retention says (run ids: 32 hex digits, the runs' trace ids)."""
    _ensure_pins(conn)
    now = time.time_ns()
    conn.executemany(f"INSERT OR REPLACE INTO {PINS} VALUES (?, ?, ?)", [(r, experiment, now) for r in run_ids])


def unpin(conn: sqlite3.Connection, run_ids: Iterable[str]) -> int:
    """Let these runs age out again; returns how many were pinned."""
    _ensure_pins(conn)
    return conn.executemany(f"DELETE FROM {PINS} WHERE run_id = ?", [(r,) for r in run_ids]).rowcount


def pins(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(run id, experiment, pinned at ns) of every pinned run, oldest pin first."""
    _ensure_pins(conn)
    return conn.execute(f"SELECT run_id, experiment, pinned_ns FROM {PINS} ORDER BY pinned_ns, run_id").fetchall()


# -- prune -------------------------------------------------------------------------------------------------------
def dataset_windows(conn: sqlite3.Connection) -> dict[str, int]:
    """{dataset: time of its latest reset record (ns)}: where each dataset's current window starts."""
    sql = (f"SELECT {_attr('LogAttributes', DATASET)}, max(Timestamp) FROM {schema.LOGS} "
           f"WHERE ScopeName = ? AND {_attr('LogAttributes', LOG_RESET)} = 'true' GROUP BY 1")
    return {name: ts for name, ts in conn.execute(sql, (SYSTEM_LOGGER,)) if name is not None}


def _keep(table: str, windows: dict[str, int]) -> tuple[str, list]:
    """SQL that is 1 for a row retention must keep (pinned, in a dataset window, bookkeeping), and its parameters.
    Each term is coalesced: a NULL from a missing attribute must not make ``NOT (...)`` NULL, i.e. keep the row."""
    cols = schema.columns(table)
    amap = next(c for c in _ATTRIBUTE_MAPS if c in cols)
    pinned = f"(SELECT run_id FROM {PINS})"
    terms, params = [f"{_attr(amap, RUN)} IN {pinned}"], []
    if "TraceId" in cols:
        terms.insert(0, f"\"TraceId\" IN {pinned}")
    if table == schema.LOGS:
        terms.append(f"(ScopeName = ? AND {_attr(amap, EVENT)} IN ({', '.join('?' * len(BOOKKEEPING_EVENTS))}))")
        params += [EXPERIMENT_SCOPE, *BOOKKEEPING_EVENTS]
        # a dataset's rows from its latest reset on; a dataset never reset (ELSE) keeps all of them
        cases = " ".join("WHEN ? THEN Timestamp >= ?" for _ in windows)
        terms.append(f"({_attr(amap, DATASET)} IS NOT NULL AND "
                     + (f"CASE {_attr(amap, DATASET)} {cases} ELSE 1 END)" if windows else "1)"))
        params += [v for item in windows.items() for v in item]
    return " OR ".join(f"coalesce({t}, 0)" for t in terms), params


def prune(conn: sqlite3.Connection, cutoff_ns: int, *, batch: int = BATCH, pause: float = 0.0,
          path: str | os.PathLike | None = None, reclaim_space: bool = True) -> PruneResult:
    """Delete every row older than ``cutoff_ns`` that is not kept (see the module doc), table by table in batches,
    then give the freed pages back to the file system where the store allows it (``reclaim``).

    ``pause``: least seconds to sleep after each batch (it also sleeps as long as the batch took)."""
    result = PruneResult(cutoff_ns, bytes_before=file_bytes(path) if path else 0)
    _ensure_pins(conn)
    existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    result.windows = dataset_windows(conn) if schema.LOGS in existing else {}
    result.pinned_runs = conn.execute(f"SELECT count(*) FROM {PINS}").fetchone()[0]
    for table in schema.TABLES:
        if table in existing:
            keep, params = _keep(table, result.windows)
            result.deleted[table] = _prune_table(conn, table, cutoff_ns, keep, params, batch, pause)
    if reclaim_space:
        result.reclaimed = reclaim(conn, pause=pause)
    result.bytes_after = file_bytes(path) if path else 0
    return result


def _prune_table(conn: sqlite3.Connection, table: str, cutoff_ns: int, keep: str, keep_params: list, batch: int,
                 pause: float) -> int:
    """Walk the time index from the oldest row: each transaction deletes the unkept rows of the next ``batch``
    rows' time range, so protected old rows are read once per pass, not once per batch."""
    t = _q(schema.TIME_COLUMN[table])
    deleted, lo = 0, None
    while True:
        began = time.monotonic()
        lower, bound = (f"{t} >= ? AND ", [lo]) if lo is not None else ("", [])
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(f"SELECT {t} FROM {table} WHERE {lower}{t} < ? ORDER BY {t} LIMIT 1 OFFSET ?",
                               [*bound, cutoff_ns, batch]).fetchone()
            hi = cutoff_ns if row is None else row[0]
            if lo is not None and hi <= lo:  # more than ``batch`` rows share one time: take them all at once
                hi = lo + 1
            deleted += conn.execute(f"DELETE FROM {table} WHERE {lower}{t} < ? AND NOT ({keep})",
                                    [*bound, hi, *keep_params]).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if hi >= cutoff_ns:
            return deleted
        lo = hi
        time.sleep(max(pause, time.monotonic() - began))


def reclaim(conn: sqlite3.Connection, pages: int = RECLAIM_PAGES, pause: float = 0.0) -> bool:
    """Give free pages back to the file system, ``pages`` per transaction; False when the store was created without
    ``auto_vacuum=INCREMENTAL`` (its free pages stay for later writes; ``vacuum()`` switches it)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return False
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    for _ in range(-(-free // pages)):  # the pages free now: what later deletes free, the next pass gives back
        began = time.monotonic()
        # executescript steps the pragma to its end; execute() would free a single page
        conn.executescript(f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({int(pages)}); COMMIT")
        time.sleep(max(pause, time.monotonic() - began))
    checkpoint(conn)
    return True


def checkpoint(conn: sqlite3.Connection, mode: str = "PASSIVE") -> None:
    """Copy the write-ahead log into the database file, which SQLite then truncates to its pages in use. PASSIVE
    never makes a writer wait (what it cannot copy now, the next checkpoint copies); TRUNCATE also empties the log
    file, holding writers off while it copies."""
    conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()


def vacuum(conn: sqlite3.Connection) -> None:
    """Rewrite the whole store once, switched to ``auto_vacuum=INCREMENTAL``: it holds the write lock throughout
    (writers wait, up to their busy timeout) and needs free disk space as large as the store."""
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("VACUUM")
    checkpoint(conn, "TRUNCATE")


# -- the background pass -----------------------------------------------------------------------------------------
class RetentionThread:
    """A daemon thread of a writing process that prunes its store file when a pass is due.

    Every writing process has one (started by ``SqliteStore.write``); a lock file picks the one that runs a pass,
    and the lock file's mtime (the end of the last pass) says when the next is due, so a store gets one pass per
    ``every`` seconds however many processes write it."""

    def __init__(self, path: str | os.PathLike, retention: float, *, every: float = PASS_EVERY,
                 check: float = CHECK_EVERY, first: float = FIRST_CHECK, pause: float = 0.0):
        self.path = Path(path)
        self.retention = retention
        self.every, self.check, self.first, self.pause = every, check, first, pause
        self.lock_path = self.path.with_name(self.path.name + ".retention")
        self.last: PruneResult | None = None
        self._reported = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="omtel-retention", daemon=True)

    def start(self) -> RetentionThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No further checks (a pass in progress ends first); the store was closed."""
        self._stopped.set()

    def _loop(self) -> None:
        wait = self.first * random.uniform(1.0, 1.5)  # spread the checks of processes started together
        while not self._stopped.wait(wait):
            wait = self.check
            try:
                self.run_if_due()
            except Exception as exc:  # a failing pass must never reach the user's work; it is tried again later
                if not self._reported:
                    self._reported = True
                    sys.__stderr__.write(f"omegaml-otel: retention of {self.path} failed: {exc}; it is retried "
                                         f"every {self.check:g} s\n")

    def run_if_due(self) -> PruneResult | None:
        """One pass if none ended in the last ``every`` seconds and no other process runs one; else None."""
        if not self.path.exists():
            return None  # removed (a test's, a temporary folder's store): nothing to prune
        if not self.lock_path.exists():
            private_file(self.lock_path)
            os.utime(self.lock_path, (0, 0))  # a fresh lock file records no pass yet
        if time.time() - self.lock_path.stat().st_mtime < self.every:
            return None
        fd = os.open(self.lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another process runs the pass
            if time.time() - os.fstat(fd).st_mtime < self.every:
                return None  # it ended while this one waited
            conn = connect(self.path)
            try:
                self.last = prune(conn, time.time_ns() - int(self.retention * 1e9), pause=self.pause,
                                  path=self.path)
            finally:
                conn.close()
            os.utime(fd)
            return self.last
        finally:
            os.close(fd)  # releases the lock

"""The store relay: a prefork worker's pool children write the embedded store through the worker's main process.

Why: a pool child that opened the SQLite store itself paid about 1 MB of private memory for it (the connection,
its statements, the libraries' pages, and the inherited heap pages its write path unshared), and the worker paid
it once per child (docs/performance.md, 12). The main process writes its own records anyway; right before it forks
a pool child (``prepare_child``) it makes a socket pair, keeps one end and leaves the other to the child. The child
sends its rows there (``RelayedStore``); one thread of the main process (``StoreRelay``) writes them and answers
once they are committed. So a flush before a task's result still means "readable by the time the result is".

- Only children the worker forks for its pool are relayed. Any other fork, and a process a pool child forks, opens
  the store itself, as every process did before.
- A child whose main process has gone (killed), or does not answer within the child's own bound and GRACE, opens
  the store itself from then on: no captured row is lost, and none is stored twice (see GRACE).
- A write the main process refused (a store that is unwritable, or locked past the child's bound) fails in the
  child as a write of its own would have, so its export buffer keeps the rows and retries.
- The pair has no name in the file system and joins exactly the two processes. Frames are ``marshal`` data made of
  plain values (rows, filters, an error text); loading them never runs code.
- A reader inside a task (a DataFrame query) opens the store in that child: reads are rare there and large.
- Only the embedded engine (``sqlite://``) is relayed; ClickHouse takes concurrent writers over the network.
"""
from __future__ import annotations

import marshal
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from omegaml_otel._internal import deadline
from omegaml_otel._internal.stores import schema
from omegaml_otel._internal.stores.base import Cond, MapKey, Store, StoreError
from omegaml_otel._internal.stores.sqlite_sql import BUSY_TIMEOUT

if TYPE_CHECKING:  # readers only: workers write rows and never load pandas (lean workers)
    import pandas as pd

__all__ = ["RelayedStore", "StoreRelay", "prepare_child", "relayed"]

_HEADER = struct.Struct("!I")
#: seconds a child waits for an answer beyond its own bound, before it takes the main process for gone. A request
#: carries that bound as a CLOCK_MONOTONIC time (one clock for all processes of a machine), after which the main
#: process no longer starts it: a child that gave up and wrote the rows itself finds no second copy in the store.
GRACE = 0.5
#: seconds the main process waits for the rest of a frame a child has started to send
_FRAME_TIMEOUT = 5.0
_TABLES = frozenset(schema.TABLES)


class RelayGone(Exception):
    """The main process closed the pair or did not answer in time: the child writes the store itself."""


def _send(sock: socket.socket, message) -> None:
    data = marshal.dumps(message)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _receive(sock: socket.socket):
    (size,) = _HEADER.unpack(_exactly(sock, _HEADER.size))
    return marshal.loads(_exactly(sock, size))


def _exactly(sock: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the store relay")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class StoreRelay:
    """The main process's side: one daemon thread that writes what the pool children send, in arrival order."""

    def __init__(self, url: str, open_direct):
        self.url = url
        self._open_direct = open_direct
        self._store: Store | None = None
        self._pending: tuple[socket.socket, socket.socket] | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._arrived: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="omtel-store-relay", daemon=True)
        self._thread.start()
        os.register_at_fork(after_in_parent=self._after_fork_in_parent, after_in_child=self._after_fork_in_child)

    def prepare(self) -> None:
        """The next fork makes a pool child: it gets one end of a new pair, this process keeps the other."""
        if self._pending is not None:  # a fork that was prepared but did not happen
            for end in self._pending:
                end.close()
        self._pending = socket.socketpair()

    def _after_fork_in_parent(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        ours, theirs = pending
        theirs.close()
        ours.settimeout(_FRAME_TIMEOUT)
        with self._lock:
            self._arrived.append(ours)
        self._wake_write.send(b"\0")

    def _after_fork_in_child(self) -> None:
        """Runs in every process forked from this one (also in a pool child's own forks, where it finds nothing
        pending): the thread stayed in the parent, so this copy of the relay serves nobody."""
        global _relay, _child
        pending, self._pending = self._pending, None
        if _relay is self:
            _relay = None
            for key in list(self._selector.get_map().values()):  # the siblings' pairs and the wake-up pair
                key.fileobj.close()
            self._selector.close()
            self._wake_write.close()
            for sock in self._arrived:
                sock.close()
        if pending is not None:
            ours, theirs = pending
            ours.close()
            _child = RelayedStore(theirs, self.url, self._open_direct)

    # -- the thread -----------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            for key, _ in self._selector.select():
                sock = key.fileobj
                if sock is self._wake_read:
                    self._take_arrivals()
                    continue
                try:
                    _send(sock, self._answer(_receive(sock)))
                except Exception:  # the child is gone, or sent what is not a request: only its pair is closed
                    self._selector.unregister(sock)
                    sock.close()

    def _take_arrivals(self) -> None:
        self._wake_read.recv(4096)
        with self._lock:
            arrived, self._arrived = self._arrived, []
        for sock in arrived:
            self._selector.register(sock, selectors.EVENT_READ)

    def _answer(self, request: tuple) -> tuple:
        """``(seq, True, result)`` or ``(seq, False, why)``: errors go back to the child, which raises them there."""
        seq, op, table, expires, *args = request
        try:
            if table not in _TABLES:
                raise StoreError(f"the store relay got rows for an unknown table {table!r}")
            left = expires - time.monotonic()
            if left <= 0:
                raise StoreError("the worker's main process took longer than the writer could wait")
            if self._store is None:
                self._store = self._open_direct(self.url)
            with deadline.within(left):
                if op == "write":
                    self._store.write(table, args[0])
                    return seq, True, None
                if op == "rows":
                    conds, columns, limit, descending = args
                    found = self._store.rows(table, conds=[Cond(*c) for c in conds],
                                             columns=[c if isinstance(c, str) else MapKey(*c) for c in columns],
                                             limit=limit, descending=descending)
                    return seq, True, [tuple(r) for r in found]
            raise StoreError(f"the store relay got an unknown request {op!r}")
        except Exception as exc:  # the relay must go on serving; the child reports the error where it wrote
            return seq, False, str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"


class RelayedStore(Store):
    """A pool child's store: writes and small lookups go to the worker's main process, DataFrame reads are its own.

    In a process forked from this child, and once the main process is gone, everything goes to a store this
    process opens itself."""

    def __init__(self, sock: socket.socket, url: str, open_direct):
        self.url = url
        self._sock: socket.socket | None = sock
        #: the pool child this store relays for (a process forked from it writes its own store)
        self.pid = os.getpid()
        self._seq = 0
        self._open_direct = open_direct
        self._direct: Store | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    @property
    def relaying(self) -> bool:
        return self._sock is not None and self.pid == os.getpid()

    def direct(self) -> Store:
        """This process's own store, opened on first use."""
        if self._direct is None:
            self._direct = self._open_direct(self.url)
        return self._direct

    def _ask(self, op: str, table: str, *args):
        """One request, answered within this thread's bound (``deadline``) and GRACE; else the relay is gone."""
        wait = deadline.remaining(BUSY_TIMEOUT)
        with self._lock:
            sock = self._sock
            if sock is None or self.pid != os.getpid():
                raise RelayGone()
            self._seq += 1
            try:
                sock.settimeout(wait + GRACE)
                _send(sock, (self._seq, op, table, time.monotonic() + wait, *args))
                seq, ok, result = _receive(sock)
                if seq != self._seq:
                    raise ValueError(f"answer {seq} to request {self._seq}")
            except (OSError, EOFError, ValueError, TypeError, struct.error) as exc:
                # closed, silent past the bound, or out of step: from now on this process writes the store itself
                self._sock = None
                sock.close()
                raise RelayGone() from exc
        if not ok:
            raise StoreError(result)
        return result

    def write(self, table: str, rows: Sequence[tuple]) -> None:
        if not rows:
            return
        if self.relaying:
            try:
                self._ask("write", table, rows if isinstance(rows, list) else list(rows))
                return
            except RelayGone:
                pass
        self.direct().write(table, rows)

    def rows(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey],
             limit: int | None = None, descending: bool = False) -> list[tuple]:
        if self.relaying:
            try:
                return self._ask("rows", table, [(c.column, c.op, c.value, c.key) for c in conds],
                                 [c if isinstance(c, str) else (c.column, c.key) for c in columns], limit, descending)
            except RelayGone:
                pass
        return self.direct().rows(table, conds=conds, columns=columns, limit=limit, descending=descending)

    def query(self, table: str, **kwargs) -> pd.DataFrame:
        return self.direct().query(table, **kwargs)

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()

    def __getattr__(self, name: str):
        """What else the engine's store offers (retention, schema) is this process's own store's."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.direct(), name)


#: this process's relay: set in a worker's main process by its first ``prepare_child``
_relay: StoreRelay | None = None
#: this process's relayed store: set in a pool child at its fork
_child: RelayedStore | None = None


def prepare_child(url: str, open_direct) -> None:
    """Called in a prefork worker's main process right before it forks a pool child (billiard's
    ``Pool._create_worker_process``, capture/celery.py): that child will write ``url`` through this process.
    ``open_direct`` opens a store without the relay."""
    global _relay
    if not url.startswith("sqlite:"):
        return
    if _relay is None:
        _relay = StoreRelay(url, open_direct)
    if _relay.url == url:
        _relay.prepare()


def relayed(url: str) -> RelayedStore | None:
    """In a relayed pool child, its store for ``url`` (the worker's store; also once the relay is gone, when it
    writes through the one store it opened itself); else None."""
    child = _child
    if child is not None and child.url == url and child.pid == os.getpid():
        return child
    return None

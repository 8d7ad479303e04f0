"""How long the write path may still wait: a bound per thread (a caller's flush) and one per process (its exit).

Telemetry must never hold up the work it observes. A flush made by the caller (before a task's result is sent,
after a log call outside a task, before a read) waits at most ``OMTEL_FLUSH_TIMEOUT`` for a store or collector
that is locked, failing or silent; an exiting process at most ``OMTEL_EXIT_TIMEOUT`` for everything together. The
waits themselves happen far below, in SQLite's busy handler and in an HTTP request to a collector, often in another
thread (an export thread, a metric reader's final export at exit): those ask ``remaining()`` how long they may
still take. The exit bound is process-wide for that reason; the caller's bound follows its context.
"""
from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_bound: contextvars.ContextVar[float | None] = contextvars.ContextVar("omtel_deadline", default=None)
#: monotonic time by which this process's exit must be done; None while it is not exiting
_exit_at: float | None = None


def remaining(default: float) -> float:
    """Seconds the next wait may take: ``default`` unless the caller's bound or the exit is nearer; never negative."""
    ends = _bound.get()
    if _exit_at is not None and (ends is None or _exit_at < ends):
        ends = _exit_at
    if ends is None:
        return default
    return max(0.0, min(default, ends - time.monotonic()))


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Bound every wait of this context to ``seconds`` from now; a nearer bound already in force stays."""
    ends = time.monotonic() + seconds
    current = _bound.get()
    token = _bound.set(ends if current is None else min(current, ends))
    try:
        yield
    finally:
        _bound.reset(token)


def exiting(budget: float) -> float:
    """Start this process's exit clock, once (a later call keeps the first deadline); the seconds left."""
    global _exit_at
    if _exit_at is None:
        _exit_at = time.monotonic() + budget
    return max(0.0, _exit_at - time.monotonic())


def run_within(call: Callable[[], object], seconds: float) -> bool:
    """Run ``call`` and wait for it at most ``seconds``; True when it finished in time without raising.

    For calls that do not bound themselves (the SDK's ``force_flush`` ignores its timeout and retries a down
    collector for up to 10 s): they run in a daemon thread, in this context (so its bound holds there too), and are
    left behind when the time is up; an exiting process does not wait for them.
    """
    if seconds <= 0:
        return False
    outcome: list[bool] = []

    def run() -> None:
        try:
            call()
            outcome.append(True)
        except Exception:  # telemetry at exit: a failed flush counts as not done, the process still exits
            outcome.append(False)

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(run,), name="omtel-bounded", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no new threads at interpreter shutdown (some Python versions): run it here instead
        run()
    else:
        thread.join(seconds)
    return outcome == [True]


def _after_fork() -> None:
    global _exit_at
    _exit_at = None  # a child forked while its parent exits has its own exit to make


os.register_at_fork(after_in_child=_after_fork)

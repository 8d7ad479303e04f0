"""Time arguments as omega-ml accepts them: datetimes, timedeltas, ISO strings and '5h'-style offsets.

Stored times are UTC, so every time given here becomes a naive UTC timestamp, 'now' and 'today' included (pandas
reads those two as local time, which on a machine outside UTC shifts every bound by the UTC offset). 'today' is the
start of the current UTC day, as ``numpy.datetime64('today')`` reads it: ``since='today'`` then means today's rows.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "n": 30 * 86400, "M": 30 * 86400,
          "q": 90 * 86400, "y": 365 * 86400}
_RELATIVE = re.compile(r"^\s*([+-]?)(\d+(?:\.\d+)?)\s*([smhdwnMqy])\s*$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def parse_time(value, *, name: str, future: bool = False, now: datetime | None = None) -> pd.Timestamp:
    """A naive UTC timestamp (nanoseconds kept, so a row's own ``created`` bounds it exactly).

    Relative strings mean 'that long ago' (``future=True``: 'that long from now'); 'now' is the current time
    (``now``, if given) and 'today' the start of its day, both UTC.
    """
    try:  # stores compare integer nanoseconds: a time they cannot hold is reported here, naming the argument
        return _parse(value, name, future, pd.Timestamp(now or utcnow())).as_unit("ns")
    except (OverflowError, pd.errors.OutOfBoundsDatetime, pd.errors.OutOfBoundsTimedelta):
        raise ValueError(f"{name}={value!r} is out of range: times must lie between {pd.Timestamp.min:%Y-%m-%d} and "
                         f"{pd.Timestamp.max:%Y-%m-%d}; give a nearer time or a shorter offset, or leave {name} out "
                         "for no bound") from None


def _parse(value, name: str, future: bool, now: pd.Timestamp) -> pd.Timestamp:
    if isinstance(value, timedelta):
        return now - value
    if isinstance(value, (datetime, pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(value)
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("now", "today"):
            return now if word == "now" else now.normalize()
        m = _RELATIVE.match(value)
        if m:
            delta = pd.Timedelta(seconds=float(m[2]) * _UNITS[m[3]])
            return now + delta if future else now - delta
        try:
            return _parse(pd.Timestamp(value), name, future, now)
        except (pd.errors.OutOfBoundsDatetime, pd.errors.OutOfBoundsTimedelta):
            raise
        except (ValueError, TypeError):
            pass
    raise ValueError(f"{name}={value!r} is not a time; give a datetime, a timedelta, an ISO string such as "
                     f"'2026-11-26T10:00' or an offset such as '5h' (units: {' '.join(_UNITS)})")

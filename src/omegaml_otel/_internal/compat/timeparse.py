"""Time arguments as omega-ml accepts them: datetimes, timedeltas, ISO strings and '5h'-style offsets.

Stored times are UTC, so every time given here becomes a naive UTC timestamp, 'now' and 'today' included (pandas
reads those two as local time, which on a machine outside UTC shifts every bound by the UTC offset). 'today' is the
start of the current UTC day, as ``numpy.datetime64('today')`` reads it: ``since='today'`` then means today's rows.

Offsets follow omega-ml's ``dtrelative``: ``'[+-]<n><unit>'`` with units ``s m h d w n|M q y`` (``n``/``M`` = 30
days, ``q`` = 90, ``y`` = 365). A bound's direction comes from the argument, not from the sign: omega-ml prefixes
``since`` with '-' and ``end`` with '+' before resolving, so ``since='5h'``, ``'-5h'`` and ``'+5h'`` all mean five
hours ago and every ``end`` offset lies ahead; a timedelta is subtracted for ``since`` and added for ``end``. The
zero-year offsets are calendar bounds: ``since='0y'`` is January 1, ``end='0y'`` December 31 (its midnight, as in
omega-ml). ``dtrelative`` itself keeps the sign.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "n": 30 * 86400, "q": 90 * 86400,
          "y": 365 * 86400}
_RELATIVE = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*([smhdwnMqySHDWNQY])\s*$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _unit(letter: str) -> str:
    """omega-ml's unit letters: 'M' is the month (as 'n'), any other letter in either case ('5H' = '5h')."""
    return "n" if letter == "M" else letter.lower()


def dtrelative(delta: str | timedelta, now: datetime | None = None, as_delta: bool = False):
    """omega-ml's ``dtrelative``: ``now`` (default: the current UTC time) moved by ``delta``.

    ``'5m'``/``'+5m'`` lie ahead, ``'-5m'`` behind; ``'-0y'`` is January 1 of ``now``'s year, ``'0y'``/``'+0y'``
    December 31; a timedelta is added. ``as_delta=True`` returns the offset instead of the time.
    """
    now = pd.Timestamp(now if now is not None else utcnow())
    if isinstance(delta, timedelta):
        offset = pd.Timedelta(delta)
    else:
        m = _RELATIVE.match(delta) if isinstance(delta, str) else None
        if m is None:
            raise ValueError(f"invalid delta {delta!r}; use a string '[+-]<n><unit>' such as '-5m' "
                             f"(units: {' '.join(_UNITS)}, 'M' = month) or a timedelta")
        past, amount, unit = m[1] == "-", float(m[2]), _unit(m[3])
        if unit == "y" and amount == 0:  # the calendar year's bounds, as in omega-ml
            offset = pd.Timestamp(now.year, 1, 1) - now if past else pd.Timestamp(now.year, 12, 31) - now
        else:
            offset = pd.Timedelta(seconds=amount * _UNITS[unit]) * (-1 if past else 1)
    if as_delta:
        return offset.to_pytimedelta()
    result = now + offset
    return result.to_pydatetime() if result.nanosecond == 0 else result


def parse_time(value, *, name: str, future: bool = False, now: datetime | None = None) -> pd.Timestamp:
    """A naive UTC timestamp (nanoseconds kept, so a row's own ``created`` bounds it exactly).

    Offsets and timedeltas mean 'that long ago' (``future=True``, for ``end``/``until``: 'that long from now'),
    whatever the sign of an offset string, as omega-ml resolves ``since``/``end``; 'now' is the current time
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
        return now + value if future else now - value
    if isinstance(value, (datetime, pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(value)
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("now", "today"):
            return now if word == "now" else now.normalize()
        m = _RELATIVE.match(value)
        if m:  # before pandas, which reads '5h' as 05:00 of year 1
            return pd.Timestamp(dtrelative(("+" if future else "-") + f"{m[2]}{m[3]}", now))
        try:
            return _parse(pd.Timestamp(value), name, future, now)
        except (pd.errors.OutOfBoundsDatetime, pd.errors.OutOfBoundsTimedelta):
            raise
        except (ValueError, TypeError):
            pass
    raise ValueError(f"{name}={value!r} is not a time; give a datetime, a timedelta, an ISO string such as "
                     f"'2026-11-26T10:00' or an offset such as '5h' (units: {' '.join(_UNITS)}, 'M' = month)")

"""Time arguments as omega-ml accepts them: datetimes, timedeltas, ISO strings and '5h'-style offsets."""
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

    Relative strings mean 'that long ago' (``future=True``: 'that long from now').
    """
    now = pd.Timestamp(now or utcnow())
    if isinstance(value, timedelta):
        return now - value
    if isinstance(value, (datetime, pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(value)
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
    if isinstance(value, str):
        m = _RELATIVE.match(value)
        if m:
            delta = pd.Timedelta(seconds=float(m[2]) * _UNITS[m[3]])
            return now + delta if future else now - delta
        try:
            return parse_time(pd.Timestamp(value), name=name)
        except (ValueError, TypeError):
            pass
    raise ValueError(f"{name}={value!r} is not a time; give a datetime, a timedelta, an ISO string such as "
                     f"'2026-11-26T10:00' or an offset such as '5h' (units: {' '.join(_UNITS)})")

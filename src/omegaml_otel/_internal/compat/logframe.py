"""otel_logs rows -> omega-ml's log layout, vectorised: this runs over millions of rows.

``text`` is formatted as omega-ml formats it: the simple logger's ``'<created> <LEVEL> <msg>'`` with the UTC time
``str(datetime)`` gives, Python records as ``'%(asctime)s - %(name)s - %(levelname)s - %(message)s'`` with a
local-time ``asctime``.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from omegaml_otel._internal.compat.levels import PYTHON_LEVELS
from omegaml_otel._internal.stores import MapKey
from omegaml_otel.conventions import HOST_NAME, LEVELNO, SYSTEM_LOGGER, TASK_ID, USER

COLUMNS = ["level", "levelno", "logger", "msg", "text", "hostname", "created"]
EXTRA_COLUMNS = ["userid", "taskid", "trace_id", "span_id", "service"]
_RA, _LA = "ResourceAttributes", "LogAttributes"
#: compat field -> where it lives in otel_logs (None: derived after reading)
FIELDS: dict[str, str | MapKey | None] = {
    "level": "SeverityText", "levelno": None, "logger": "ScopeName", "msg": "Body", "text": None,
    "hostname": MapKey(_RA, HOST_NAME), "created": "Timestamp",
    "userid": MapKey(_RA, USER), "taskid": MapKey(_LA, TASK_ID),
    "trace_id": "TraceId", "span_id": "SpanId", "service": "ServiceName",
}
#: what a read selects to build the layout (the extra columns add theirs)
SELECT = ["Timestamp", "SeverityText", "SeverityNumber", "ScopeName", "Body", FIELDS["hostname"],
          MapKey(_LA, LEVELNO)]


def to_compat(raw: pd.DataFrame, extras: list[str] = ()) -> pd.DataFrame:
    """otel_logs rows -> omega-ml's log layout (vectorised; this runs over millions of rows)."""
    created = raw["Timestamp"]
    level = raw["SeverityText"].astype(object)
    logger = raw["ScopeName"].astype(object)
    msg = raw["Body"].astype(object)
    simple_no = pd.to_numeric(raw[MapKey(_LA, LEVELNO).label], errors="coerce")
    is_simple = simple_no.notna().to_numpy()
    python_no = level.map(PYTHON_LEVELS)
    if python_no.isna().any():
        python_no = python_no.fillna(raw["SeverityNumber"].map(_SEVERITY_TO_PYTHON)).fillna(0)
    levelno = np.where(is_simple, simple_no.fillna(0), python_no).astype("int64")
    ns = created.to_numpy().view("int64")
    text = np.empty(len(raw), dtype=object)
    py = ~is_simple
    if py.any():
        text[py] = _python_text(ns[py], logger.to_numpy()[py], level.to_numpy()[py], msg.to_numpy()[py])
    if is_simple.any():
        text[is_simple] = [f"{t} {lv} {m}" for t, lv, m in zip(
            _iso(ns[is_simple]), level.to_numpy()[is_simple], msg.to_numpy()[is_simple])]
        init = levelno == 999
        text[init] = msg.to_numpy()[init]
    # text as Python strings like the other columns (an ndarray would be inferred as pandas' string dtype)
    df = pd.DataFrame({"level": level, "levelno": levelno, "logger": logger, "msg": msg,
                       "text": pd.Series(text, index=raw.index, dtype=object),
                       "hostname": raw[FIELDS["hostname"].label].astype(object), "created": created})
    df = _drop_repeated_init(df)
    for c in extras:
        target = FIELDS[c]
        df[c] = raw.loc[df.index, target.label if isinstance(target, MapKey) else target].fillna("")
    return df


def _drop_repeated_init(df: pd.DataFrame) -> pd.DataFrame:
    # processes that started the dataset at the same moment each wrote a 'log init'; show the first only
    init = (df["levelno"] == 999) & (df["logger"] == SYSTEM_LOGGER)
    if init.sum() > 1:
        first = init.idxmax()
        df = df[~init | (df.index == first)]
    return df


_SEVERITY_TO_PYTHON = {1: 10, 5: 10, 9: 20, 13: 30, 17: 40, 21: 50}


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique keys, index of each row's key): O(n) for the time-ordered rows the store returns."""
    if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
        return np.unique(keys, return_inverse=True)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=np.int64)
    inverse = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(keys)]))
    return keys[starts], inverse


def _seconds(ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """'YYYY-MM-DD HH:MM:SS' of each time, formatted once per distinct second, and the sub-second remainder."""
    sec, rem = np.divmod(ns, 10**9)
    uniq, inverse = _groups(sec)
    text = np.strings.replace(np.datetime_as_string(uniq.astype("datetime64[s]"), unit="s"), "T", " ")
    return text.astype(object)[inverse], rem


def _iso(ns: np.ndarray) -> list[str]:
    """``str(datetime)`` of naive UTC times, as omega-ml's simple logger writes ``created``."""
    prefix, rem = _seconds(ns)
    return [f"{p}.{r:06d}" for p, r in zip(prefix, (rem // 1000).tolist())]


def _local_offsets(ns: np.ndarray) -> np.ndarray:
    """The local UTC offset (ns) of each time. Zone and DST changes fall on 15-minute boundaries, so one
    ``time.localtime`` per 15-minute slot in the data gives every row's offset."""
    uniq, inverse = _groups(ns // (900 * 10**9))
    offsets = np.array([time.localtime(int(s) * 900).tm_gmtoff for s in uniq], dtype="int64")
    return offsets[inverse] * 10**9


def _python_text(ns: np.ndarray, logger, level, msg) -> list[str]:
    """omega-ml's ``'%(asctime)s - %(name)s - %(levelname)s - %(message)s'`` with local-time asctime."""
    prefix, rem = _seconds(ns + _local_offsets(ns))
    return [f"{p},{r:03d} - {n} - {lv} - {m}"
            for p, r, n, lv, m in zip(prefix, (rem // 10**6).tolist(), logger, level, msg)]

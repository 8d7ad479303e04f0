"""otel_logs rows -> omega-ml's log layout, vectorised: this runs over millions of rows.

``text`` is formatted as omega-ml formats it: the simple logger's ``'<created> <LEVEL> <msg>'`` with the UTC time
``str(datetime)`` gives, Python records as ``'%(asctime)s - %(name)s - %(levelname)s - %(message)s'`` with a
local-time ``asctime``.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from omegaml_otel._internal.compat.distinct import numbers, per_distinct, spread
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
    """otel_logs rows -> omega-ml's log layout, with one Python step per row at most: levels are looked up once per
    distinct level name, and ``text`` is joined once per row from pieces formatted once per distinct time, and
    logger and level. The layout's strings are Python ``str`` objects (dtype object)."""
    created = raw["Timestamp"]
    level = raw["SeverityText"].to_numpy(dtype=object)
    logger = raw["ScopeName"].to_numpy(dtype=object)
    msg = raw["Body"].to_numpy(dtype=object)
    level_codes, level_names = pd.factorize(level)
    simple_no = per_distinct(raw[MapKey(_LA, LEVELNO).label], numbers, np.nan)
    is_simple = ~np.isnan(simple_no)
    python_no = spread(level_codes, [PYTHON_LEVELS.get(n, np.nan) for n in level_names], np.nan)
    unknown = np.isnan(python_no)
    if unknown.any():  # a level name Python does not know: its severity number decides
        python_no[unknown] = [_SEVERITY_TO_PYTHON.get(int(n), 0) for n in raw["SeverityNumber"].to_numpy()[unknown]]
    levelno = np.where(is_simple, simple_no, python_no).astype("int64")
    ns = created.to_numpy().view("int64")
    text = np.empty(len(raw), dtype=object)
    py = ~is_simple
    if py.any():  # '%(asctime)s - %(name)s - %(levelname)s - %(message)s', asctime in local time
        stamps = _stamps(ns[py] + _local_offsets(ns[py]), 3, ",")
        logger_codes, logger_names = pd.factorize(logger[py])
        pair_codes, pairs = pd.factorize(logger_codes.astype("int64") * len(level_names) + level_codes[py])
        names = spread(pair_codes, [f" - {logger_names[p // len(level_names)]} - {level_names[p % len(level_names)]} - "
                                    for p in pairs.tolist()])
        text[py] = list(map("".join, zip(stamps, names, msg[py])))
    if is_simple.any():  # '<created> <LEVEL> <msg>', created as str(datetime) of the UTC time
        names = spread(level_codes[is_simple], [f" {lv} " for lv in level_names])
        text[is_simple] = list(map("".join, zip(_stamps(ns[is_simple], 6, "."), names, msg[is_simple])))
        init = levelno == 999
        text[init] = msg[init]

    def strings(values: np.ndarray) -> pd.Series:  # Python strings: an ndarray would infer pandas' string dtype
        return pd.Series(values, index=raw.index, dtype=object, copy=False)

    df = pd.DataFrame({"level": strings(level), "levelno": pd.Series(levelno, index=raw.index, copy=False),
                       "logger": strings(logger), "msg": strings(msg), "text": strings(text),
                       "hostname": strings(raw[FIELDS["hostname"].label].to_numpy(dtype=object)), "created": created},
                      copy=False)
    df = _drop_repeated_init(df, levelno, logger)
    for c in extras:
        target = FIELDS[c]
        df[c] = raw.loc[df.index, target.label if isinstance(target, MapKey) else target].fillna("")
    return df


def _drop_repeated_init(df: pd.DataFrame, levelno: np.ndarray, logger: np.ndarray) -> pd.DataFrame:
    # processes that started the dataset at the same moment each wrote a 'log init'; show the first only
    init = levelno == 999
    init[init] = logger[init] == SYSTEM_LOGGER
    if init.sum() > 1:
        init[init.argmax()] = False
        df = df[~init]
    return df


_SEVERITY_TO_PYTHON = {1: 10, 5: 10, 9: 20, 13: 30, 17: 40, 21: 50}


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique keys, index of each row's key): O(n) for the time-ordered rows the store returns."""
    if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
        return np.unique(keys, return_inverse=True)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=np.int64)
    inverse = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(keys)]))
    return keys[starts], inverse


def _stamps(ns: np.ndarray, digits: int, sep: str) -> np.ndarray:
    """``'YYYY-MM-DD HH:MM:SS' + sep`` + the first ``digits`` sub-second digits of each time, formatted once per
    distinct value (rows of the same millisecond or microsecond share theirs; seconds are formatted once each)."""
    uniq, inverse = _groups(ns // 10 ** (9 - digits))
    sec, frac = np.divmod(uniq, 10**digits)
    seconds, second_of = _groups(sec)
    prefix = np.strings.replace(np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s"), "T", " ")
    prefix = np.asarray(prefix.tolist(), dtype=object)[second_of]
    return np.array([f"{p}{sep}{f:0{digits}d}" for p, f in zip(prefix.tolist(), frac.tolist())], dtype=object)[inverse]


def _local_offsets(ns: np.ndarray) -> np.ndarray:
    """The local UTC offset (ns) of each time. Zone and DST changes fall on 15-minute boundaries, so one
    ``time.localtime`` per 15-minute slot in the data gives every row's offset."""
    uniq, inverse = _groups(ns // (900 * 10**9))
    offsets = np.array([time.localtime(int(s) * 900).tm_gmtoff for s in uniq], dtype="int64")
    return offsets[inverse] * 10**9

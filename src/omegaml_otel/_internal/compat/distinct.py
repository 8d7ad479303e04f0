"""Columns of few distinct values, converted once per distinct value: the readers' way around a Python step per row.

Log levels, logger names, run ids and steps repeat over millions of rows; a hash lookup per row (``pd.factorize``)
and a Python call per distinct value cost a fraction of a call per row.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd


def spread(codes: np.ndarray, values: Sequence, missing=None) -> np.ndarray:
    """``values[code]`` for every row's code, ``missing`` for code -1 (``pd.factorize``'s missing value). With a
    ``missing`` other than None, numbers give a numeric array (floats where a NaN ``missing`` is used, as pandas);
    else an object array."""
    table = np.asarray(values, dtype=object if missing is None else None)
    if len(codes) and codes.min() < 0:
        table = np.append(table, [missing])  # code -1: the last one
    return table[codes]


def per_distinct(keys: np.ndarray | pd.Series, convert: Callable[[np.ndarray], Sequence], missing=None) -> np.ndarray:
    """``convert(distinct keys)`` (one value per distinct key, in order) for every row; a missing key (None, NaN)
    gets ``missing``."""
    codes, distinct = pd.factorize(np.asarray(keys, dtype=object))
    return spread(codes, convert(np.asarray(distinct, dtype=object)), missing)


def numbers(texts: np.ndarray) -> np.ndarray:
    """Numbers stored as attribute strings (steps, level numbers), as ``pd.to_numeric`` reads them: integers where
    every text is one, else floats with NaN where a text is no number."""
    return pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").to_numpy()

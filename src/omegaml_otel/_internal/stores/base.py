"""The ``Store`` interface: one read/write API over every engine, returning the exporter's column names."""
from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from omegaml_otel._internal.stores import schema
from omegaml_otel.errors import StoreError

if TYPE_CHECKING:  # readers only: workers write rows and never load pandas (lean workers)
    import pandas as pd

#: comparison operators of filters, and their SQL (both engines spell them alike)
COMPARISONS = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
#: every filter operator, as users write it in ``field__op=value``
OPS = (*COMPARISONS, "in", "contains", "startswith")

__all__ = ["COMPARISONS", "OPS", "Cond", "MapKey", "Store", "StoreError", "to_ns"]


@dataclass(frozen=True)
class Cond:
    """One filter: ``column op value``, or ``column[key] op value`` for an attribute map column."""

    column: str
    op: str
    value: Any
    key: str | None = None

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"unknown filter operator {self.op!r}; use one of {', '.join(OPS)}")

    @property
    def label(self) -> str:
        return self.column if self.key is None else f"{self.column}['{self.key}']"


@dataclass(frozen=True)
class MapKey:
    """Select one key of an attribute map as its own column, named ``Column['key']``."""

    column: str
    key: str

    @property
    def label(self) -> str:
        return f"{self.column}['{self.key}']"


class Store(abc.ABC):
    """A telemetry store: writes rows in the logical schema, reads them back as DataFrames.

    ``since``/``until`` bound the table's time column (inclusive, naive UTC datetimes or ns integers).
    """

    url: str

    @abc.abstractmethod
    def write(self, table: str, rows: Sequence[tuple]) -> None:
        """Append rows whose values are ordered as ``schema.columns(table)``."""

    @abc.abstractmethod
    def query(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey] | None = None,
              since: datetime | int | None = None, until: datetime | int | None = None,
              limit: int | None = None, descending: bool = False, python_strings: bool = False) -> pd.DataFrame:
        """Rows of ``table`` matching all ``conds``, ordered by the time column.

        ``python_strings``: string columns as Python ``str`` objects (dtype object, missing values None) rather
        than pandas' string dtype, for readers that format them in Python anyway: a million rows then skip a
        conversion to Arrow strings and back (about 0.6 s of a log dataset read)."""

    def exists(self, table: str, *, conds: Iterable[Cond] = ()) -> bool:
        """Whether any row of ``table`` matches all ``conds``. The one read a writer makes (the log dataset's
        ``log init`` check in a worker's first logging task), answered without a DataFrame: a worker that only
        writes never loads pandas."""
        return bool(self.rows(table, conds=conds, columns=[schema.TIME_COLUMN[table]], limit=1))

    @abc.abstractmethod
    def rows(self, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey],
             limit: int | None = None, descending: bool = False) -> list[tuple]:
        """The selected ``columns`` of matching rows as plain tuples, ordered by the time column (values as the
        engine returns them: attribute values are strings). For the small lookups a writer makes (the provider an
        experiment was declared with, read on a worker), without a DataFrame: lean workers never load pandas."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def logs(self, **kw) -> pd.DataFrame:
        return self.query(schema.LOGS, **kw)

    def spans(self, **kw) -> pd.DataFrame:
        return self.query(schema.TRACES, **kw)

    def metrics(self, **kw) -> pd.DataFrame:
        """Gauge and sum data points together (updowncounters land in the sum table), ordered by time."""
        import pandas as pd  # readers only: workers never load pandas (lean workers)

        frames = [self.query(t, **kw) for t in (schema.GAUGE, schema.SUM)]
        found = [f for f in frames if len(f)]
        if not found:
            return frames[0]  # the gauge table's empty frame: its columns and dtypes, without a third query
        return pd.concat(found, ignore_index=True).sort_values("TimeUnix", kind="stable", ignore_index=True)


_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def to_ns(value: datetime | int | float | pd.Timestamp) -> int:
    """Naive datetimes are UTC, as every time column is. Numbers and plain datetimes (what the write path passes)
    are converted without pandas; anything else (a pandas Timestamp with nanoseconds, a numpy datetime64, an ISO
    string) the way ``pd.Timestamp`` reads it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if type(value) is datetime:
        since = value - (_EPOCH if value.tzinfo is None else _EPOCH_UTC)
        return since // _MICROSECOND * 1000
    import pandas as pd  # only for values the write path never passes: workers never load pandas (lean workers)

    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value)

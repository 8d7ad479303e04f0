"""QueryPlan: what a ``Store.query`` call asks for, checked once, before any engine renders SQL.

Both engines answer the same questions the same way (which table, which columns of which kind, which filters on
which columns, time bounds, order, limit); only the SQL differs. The plan validates names against the logical
schema and normalises values (times to ns, attribute-map values to strings), so an engine keeps just its quoting,
its parameters and the rendering of one column or one condition (``SqlDialect``).
"""
from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from omegaml_otel._internal.stores import schema
from omegaml_otel._internal.stores.base import Cond, MapKey, to_ns


@dataclass(frozen=True)
class Column:
    """One selected column: a table column, or one key of an attribute map (``key`` set, kind ``str``)."""

    label: str
    column: str
    kind: str
    key: str | None = None


@dataclass(frozen=True)
class Filter:
    """One checked condition; ``kind`` is the kind of what is compared (``str`` for a map key)."""

    column: str
    op: str
    value: Any
    kind: str
    key: str | None = None


#: the range of a ClickHouse ``DateTime`` (UInt32 seconds since 1970): a key bound outside it would prune nothing, and
#: ``toDateTime`` of a time before 1970 does not give a second the bound could keep
_KEY_SECONDS = range(1, 2**32 - 1)


@dataclass(frozen=True)
class KeyBound:
    """A bound in whole seconds on a table's key time column (``schema.KEY_TIME_COLUMN``), implied by the plan's
    bounds on its time column. The key column holds ``toDateTime(time)``: the lower bound is floored and the upper
    one ceiled, so the bound never leaves out a row that the time filters keep (also where a writer rounds)."""

    column: str
    op: str  # "gte" or "lte"
    seconds: int


@dataclass(frozen=True)
class QueryPlan:
    table: str
    time_column: str
    columns: tuple[Column, ...]
    filters: tuple[Filter, ...]
    limit: int | None
    descending: bool

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.columns]

    @property
    def key_bounds(self) -> tuple[KeyBound, ...]:
        """The bounds on the table's key time column that the time filters imply (none where the table has no
        such column): where a layout orders and partitions by that column, only they let ClickHouse skip parts."""
        key = schema.KEY_TIME_COLUMN.get(self.table)
        lower = upper = None
        for f in self.filters if key else ():
            if f.column != self.time_column or f.key is not None or f.op not in ("eq", "in", "gt", "gte", "lt", "lte"):
                continue
            values = f.value if f.op == "in" else [f.value]
            if not values:  # an empty 'in' matches nothing already
                continue
            if f.op in ("eq", "in", "gt", "gte"):
                lower = max(lower, min(values)) if lower is not None else min(values)
            if f.op in ("eq", "in", "lt", "lte"):
                upper = min(upper, max(values)) if upper is not None else max(values)
        bounds = []
        if lower is not None and lower // 10**9 in _KEY_SECONDS:
            bounds.append(KeyBound(key, "gte", lower // 10**9))
        if upper is not None and -(-upper // 10**9) in _KEY_SECONDS:
            bounds.append(KeyBound(key, "lte", -(-upper // 10**9)))
        return tuple(bounds)

    @classmethod
    def build(cls, table: str, *, conds: Iterable[Cond] = (), columns: Sequence[str | MapKey] | None = None,
              since: datetime | int | None = None, until: datetime | int | None = None, limit: int | None = None,
              descending: bool = False) -> QueryPlan:
        if table not in schema.TABLES:
            raise ValueError(f"unknown table {table!r}; use one of {', '.join(schema.TABLES)}")
        tcol = schema.TIME_COLUMN[table]
        selected = []
        for c in (columns if columns is not None else schema.columns(table)):
            if isinstance(c, MapKey):
                schema.check_column(table, c.column, "map")
                selected.append(Column(c.label, c.column, "str", str(c.key)))
            else:
                selected.append(Column(c, c, schema.check_column(table, c)))
        bounds = [Cond(tcol, op, v) for op, v in (("gte", since), ("lte", until)) if v is not None]
        return cls(table, tcol, tuple(selected), tuple(_check(table, c) for c in [*bounds, *conds]),
                   int(limit) if limit is not None else None, descending)


def _check(table: str, cond: Cond) -> Filter:
    if cond.key is not None:
        schema.check_column(table, cond.column, "map")
        value = [str(v) for v in cond.value] if cond.op == "in" else str(cond.value)
        return Filter(cond.column, cond.op, value, "str", str(cond.key))
    kind = schema.check_column(table, cond.column)
    value = list(cond.value) if cond.op == "in" else cond.value
    if kind == "time" and cond.op not in ("contains", "startswith"):
        value = [to_ns(v) for v in value] if cond.op == "in" else to_ns(value)
    return Filter(cond.column, cond.op, value, kind)


class SqlDialect(abc.ABC):
    """One engine's SQL for a plan. Parameters are bound in the order the text is written (SQLite's ``?`` are
    positional), so ``render`` asks for the columns first, then the conditions (the key bounds last), then the
    limit."""

    @abc.abstractmethod
    def quote(self, name: str) -> str: ...

    @abc.abstractmethod
    def bind(self, value: Any, type_: str) -> str:
        """A placeholder for ``value`` (``type_``: the ClickHouse type, ignored where the engine infers it)."""

    @abc.abstractmethod
    def column(self, column: Column, index: int) -> str: ...

    @abc.abstractmethod
    def condition(self, f: Filter) -> str: ...

    def key_condition(self, bound: KeyBound) -> str | None:
        """The condition for one key bound, or None where the table lacks the key column (every SQLite table: its
        index on the time column serves the time filters themselves)."""
        return None

    def order(self, plan: QueryPlan) -> str:
        return f"{self.quote(plan.time_column)} {'DESC' if plan.descending else 'ASC'}"

    def render(self, plan: QueryPlan, source: str) -> str:
        exprs = [self.column(c, i) for i, c in enumerate(plan.columns)]
        where = [self.condition(f) for f in plan.filters]
        where += [c for c in map(self.key_condition, plan.key_bounds) if c is not None]
        sql = f"SELECT {', '.join(exprs)} FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + self.order(plan)
        if plan.limit is not None:
            sql += f" LIMIT {self.bind(plan.limit, 'UInt64')}"
        return sql

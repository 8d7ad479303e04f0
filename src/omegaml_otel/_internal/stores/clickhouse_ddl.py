"""The ClickHouse DDL: ``collector-config/clickhouse/schema.sql`` rendered for a database, a TTL and a cluster, and
the upgrade plan that brings a live database to it.

One file holds the single-node statements; the cluster variant (replicated local tables behind Distributed tables
of the same names) is derived from it here, so the two can never drift apart. Upgrades are derived from the same
statements too (``plan_upgrade``): what the file has and the database lacks is added, nothing is ever dropped.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

DDL_PATH = Path(__file__).with_name("clickhouse_schema.sql")  # -> collector-config/clickhouse/schema.sql
#: the version of schema.sql, recorded in VERSION_TABLE by ``omtel schema apply``; raise it with every change to the
#: file. 1: logs, traces (+ trace index and view), gauge, sum, histogram. 2: + exponential histogram, summary,
#: omtel_schema_version, and a minmax index on TimeUnix in every metric table.
SCHEMA_VERSION = 2
#: this package's record of applied versions (not an exporter table: no collector writes or reads it)
VERSION_TABLE = "omtel_schema_version"
#: what a database or cluster name may be: it is written into DDL, where no parameter can stand
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """A ClickHouse identifier in backquotes."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# Sharding keys of the Distributed tables in the cluster variant (render_ddl(cluster=...)). Why these:
# - otel_traces: cityHash64(TraceId) keeps every span of a trace on one shard, so a trace lookup reads one shard
#   (with optimize_skip_unused_shards) and the materialized view, which fires on the shard that stores the spans,
#   writes the trace's otel_traces_trace_id_ts rows to that same shard; that table's key is the same, so a row
#   inserted through its Distributed table lands where the view would have put it.
# - otel_logs: the same key, so a task's log records sit next to its spans; records outside any trace (empty
#   TraceId) would otherwise all hash to one shard, so they are spread with rand64().
# - metrics: a hash of the series (service, metric, attributes): each time series stays on one shard in time
#   order (compresses well; per-series rates and last values are computed on one shard), and the series spread.
_SERIES_KEY = "cityHash64(ServiceName, MetricName, Attributes)"
_SHARDING_KEYS = {
    "otel_logs": "if(TraceId = '', rand64(), cityHash64(TraceId))",
    "otel_traces": "cityHash64(TraceId)",
    "otel_traces_trace_id_ts": "cityHash64(TraceId)",
    "otel_metrics_gauge": _SERIES_KEY,
    "otel_metrics_sum": _SERIES_KEY,
    "otel_metrics_histogram": _SERIES_KEY,
    "otel_metrics_exponential_histogram": _SERIES_KEY,
    "otel_metrics_summary": _SERIES_KEY,
    VERSION_TABLE: "rand()",  # a few rows, read whole
}
_CREATE = re.compile(r"(CREATE\s+(DATABASE|TABLE|MATERIALIZED\s+VIEW)\s+IF\s+NOT\s+EXISTS\s+)([\w.]+)")
_ENGINE = re.compile(r"\bENGINE = (\w*MergeTree)\b(?:\(([^()]*)\))?")


def render_ddl(database: str = "otel", ttl_days: int | None = None, cluster: str | None = None,
               path: Path | None = None) -> list[str]:
    """The statements of ``collector-config/clickhouse/schema.sql`` (or of another file in its format, ``path``) for
    ``database``, with a TTL or without.

    With ``cluster`` (a name from ``<remote_servers>`` in the ClickHouse config), the same file gives the cluster
    variant (see ``_on_cluster``), so there is one copy of the DDL for both.
    """
    if not IDENT.match(database or ""):
        raise ValueError(f"database name {database!r} must be a plain identifier (letters, digits, _)")
    if cluster is not None and not IDENT.match(cluster):
        raise ValueError(f"cluster name {cluster!r} must be a plain identifier (letters, digits, _); use the name "
                         "of the cluster under <remote_servers> in the ClickHouse server config")
    if ttl_days is not None and (isinstance(ttl_days, bool) or int(ttl_days) != ttl_days or ttl_days <= 0):
        raise ValueError(f"ttl_days must be a positive whole number of days or None, not {ttl_days!r}")
    lines = []
    for line in (path or DDL_PATH).read_text().splitlines():
        if line.lstrip().startswith("--"):
            continue
        if "{ttl_days}" in line and ttl_days is None:
            continue
        lines.append(line.replace("{database}", database).replace("{ttl_days}", str(ttl_days)))
    stmts, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            stmts.append("\n".join(current).strip().rstrip(";").strip())
            current = []
    if "".join(current).strip():
        stmts.append("\n".join(current).strip())
    stmts = [s for s in stmts if s]
    return _on_cluster(stmts, database, cluster) if cluster else stmts


def _on_cluster(stmts: list[str], database: str, cluster: str) -> list[str]:
    """The single-node statements rewritten for a cluster: replicated ``<table>_local`` tables on every node, and
    a Distributed table under the plain name over them, so collectors and readers keep using the plain names.

    Every statement runs ``ON CLUSTER``. A ``*MergeTree`` engine becomes ``Replicated*MergeTree`` with the usual
    Keeper path and the ``{shard}``/``{replica}`` macros, which each server fills in from its ``<macros>``.
    Materialized views read and write the local tables: an insert into a Distributed table is forwarded to the
    local tables of the shards, where the view fires.
    """
    on = f" ON CLUSTER {quote_ident(cluster)}"
    tables = [m[3].split(".", 1)[1] for m in map(_CREATE.match, stmts) if m and m[2] == "TABLE"]
    local_ref = re.compile(rf"\b{database}\.({'|'.join(tables)})\b")
    out = []
    for stmt in stmts:
        m = _CREATE.match(stmt)
        if not m:
            raise ValueError(f"schema.sql statement {stmt[:60]!r}... is not CREATE DATABASE/TABLE/MATERIALIZED VIEW "
                             "IF NOT EXISTS; render_ddl cannot place it on a cluster: extend _on_cluster")
        head, kind, name = m[1], m[2], m[3]
        if kind == "DATABASE":
            out.append(head + name + on + stmt[m.end():])
        elif kind == "TABLE":
            table = name.split(".", 1)[1]
            engine = _ENGINE.search(stmt)
            if not engine or table not in _SHARDING_KEYS:
                raise ValueError(f"schema.sql table {table} needs a *MergeTree engine and a sharding key in "
                                 "_SHARDING_KEYS (omegaml_otel._internal.stores.clickhouse_ddl) for the cluster "
                                 "variant")
            args = [f"'/clickhouse/tables/{{shard}}/{database}/{table}_local'", "'{replica}'"]
            args += [engine[2]] if engine[2] else []
            local = (head + f"{name}_local" + on + stmt[m.end():engine.start()]
                     + f"ENGINE = Replicated{engine[1]}({', '.join(args)})" + stmt[engine.end():])
            out.append(local)
            out.append(f"{head}{name}{on} AS {name}_local\n"
                       f"ENGINE = Distributed('{cluster}', '{database}', '{table}_local', {_SHARDING_KEYS[table]})")
        else:
            out.append(head + name + on + local_ref.sub(r"\g<0>_local", stmt[m.end():]))
    return out


# -- upgrades -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableDef:
    """One CREATE TABLE of the rendered DDL, taken apart just far enough to compare it with a live table."""

    name: str  #: database.table
    #: column name as system.columns lists it (``Events.Name`` for Nested parts) -> its definition for ADD COLUMN
    columns: dict[str, str]
    indexes: dict[str, str]  #: skip index name -> its definition for ADD INDEX
    keys: str  #: what follows the column list: engine, partitioning, sort key, TTL, settings
    source: str | None = None  #: a Distributed table of the cluster variant: the local table whose columns it has


@dataclass(frozen=True)
class Step:
    """One statement of an upgrade, and what it does in words."""

    reason: str
    statement: str


@dataclass(frozen=True)
class LiveSchema:
    """What a database holds now: read from system.databases/tables/columns/data_skipping_indices."""

    database_exists: bool
    columns: dict[str, dict[str, str]]  #: table or view -> {column: type}
    indexes: dict[str, set[str]] = field(default_factory=dict)  #: table -> its skip index names


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands against this package's DDL: ``steps`` is what ``apply_schema`` would run."""

    database: str
    recorded: int | None  #: the last version ``omtel schema apply`` recorded there (None: none recorded)
    target: int
    steps: list[Step]
    notes: list[str]  #: differences that are left alone on purpose

    @property
    def up_to_date(self) -> bool:
        return not self.steps and self.recorded == self.target


_DERIVED = re.compile(r"\s(DEFAULT|MATERIALIZED|ALIAS)\s")
_TABLE_HEAD = re.compile(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+([\w.]+)(?:\s+ON\s+CLUSTER\s+\S+)?\s*")


def _parenthesised(text: str) -> tuple[str, str]:
    """(what the first parenthesis of ``text`` encloses, what follows its closing parenthesis)."""
    start, depth = text.index("("), 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i], text[i + 1:]
    raise ValueError(f"unbalanced parentheses in {text[:60]!r}")


def _split_top(body: str) -> list[str]:
    """The comma-separated items of a column list, commas inside parentheses kept; whitespace collapsed."""
    items, depth, current = [], 0, []
    for ch in body:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [" ".join(item.split()) for item in items if item.strip()]


def parse_table(stmt: str) -> TableDef:
    """A rendered CREATE TABLE statement as columns, skip indexes and keys (the DDL this package ships only: no
    string literals inside the column list)."""
    head = _TABLE_HEAD.match(stmt)
    if not head:
        raise ValueError(f"not a CREATE TABLE IF NOT EXISTS statement: {stmt[:60]!r}")
    rest = stmt[head.end():]
    if rest.startswith("AS "):
        return TableDef(head[1], {}, {}, rest, source=rest[3:].split()[0])
    body, keys = _parenthesised(rest)
    columns, indexes = {}, {}
    for item in _split_top(body):
        name, _, definition = item.partition(" ")
        if name == "INDEX":
            indexes[definition.split()[0]] = definition
        elif definition.startswith("Nested"):
            # ClickHouse stores Nested(a T, ...) as the arrays `name.a Array(T)`: that is what a table lacks or has
            inner, after = _parenthesised(definition)
            for part in _split_top(inner):
                sub, _, sub_type = part.partition(" ")
                columns[f"{name}.{sub}"] = f"`{name}.{sub}` Array({sub_type}){after.rstrip()}"
        else:
            columns[name] = item
    return TableDef(head[1], columns, indexes, keys)


def plan_upgrade(stmts: list[str], live: LiveSchema, cluster: str | None = None) -> tuple[list[Step], list[str]]:
    """The statements that bring ``live`` to ``stmts`` (``render_ddl`` output), and notes on what is left alone.

    Missing databases, tables and views are created; missing columns are added (``ADD COLUMN IF NOT EXISTS``) and
    missing skip indexes too (``ADD INDEX IF NOT EXISTS``: they cover data written from then on). Nothing is dropped
    or changed: an existing view, a column's type (the readers take ``DateTime`` and ``DateTime64(9)`` alike) and the
    sort key stay as they are. A missing column that the DDL derives for its keys only (``TimestampTime DEFAULT
    toDateTime(Timestamp)``, which the v0.151+ exporter layout sorts without) is not added: the table keeps its own
    keys, so the column would be dead weight.
    """
    on = f" ON CLUSTER {quote_ident(cluster)}" if cluster else ""
    steps: list[Step] = []
    notes: list[str] = []
    defs: dict[str, TableDef] = {}
    for stmt in stmts:
        m = _CREATE.match(stmt)
        if not m:
            raise ValueError(f"cannot plan an upgrade for statement {stmt[:60]!r}...: only CREATE ... IF NOT EXISTS")
        kind, name = m[2].split()[0].lower(), m[3]
        if kind == "database":
            if not live.database_exists:
                steps.append(Step(f"new database {name}", stmt))
            continue
        if kind == "table":
            defs[name] = parse_table(stmt)
        table = name.split(".", 1)[1]
        if table not in live.columns:
            steps.append(Step(f"new {'table' if kind == 'table' else 'view'} {name}", stmt))
            continue
        if kind != "table":
            continue
        target = defs[name]
        full = defs[target.source] if target.source else target
        have = live.columns[table]
        for column, definition in full.columns.items():
            if column in have:
                continue
            if _DERIVED.search(definition) and re.search(rf"(?<![\w.]){re.escape(column)}(?![\w.])", full.keys):
                notes.append(f"{name} has no {column}: a column this DDL derives for its keys only; the table "
                             "sorts by its own keys (a newer exporter layout), so it is not added")
                continue
            steps.append(Step(f"{name}: add column {column}",
                              f"ALTER TABLE {name}{on} ADD COLUMN IF NOT EXISTS {definition}"))
        if target.source:  # a Distributed table has no indexes of its own
            continue
        for index, definition in target.indexes.items():
            if index not in live.indexes.get(table, set()):
                steps.append(Step(f"{name}: add index {index}",
                                  f"ALTER TABLE {name}{on} ADD INDEX IF NOT EXISTS {definition}"))
    return steps, notes


def ddl_sha256() -> str:
    """A fingerprint of schema.sql's statements (comments and placeholders aside), recorded with each version."""
    return hashlib.sha256("\n;\n".join(render_ddl("otel")).encode()).hexdigest()

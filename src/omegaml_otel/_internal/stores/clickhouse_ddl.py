"""The ClickHouse DDL: ``collector-config/clickhouse/schema.sql`` rendered for a database, a TTL and a cluster.

One file holds the single-node statements; the cluster variant (replicated local tables behind Distributed tables
of the same names) is derived from it here, so the two can never drift apart.
"""
from __future__ import annotations

import re
from pathlib import Path

DDL_PATH = Path(__file__).with_name("clickhouse_schema.sql")  # -> collector-config/clickhouse/schema.sql
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
}
_CREATE = re.compile(r"(CREATE\s+(DATABASE|TABLE|MATERIALIZED\s+VIEW)\s+IF\s+NOT\s+EXISTS\s+)([\w.]+)")
_ENGINE = re.compile(r"\bENGINE = (\w*MergeTree)\b(?:\(([^()]*)\))?")


def render_ddl(database: str = "otel", ttl_days: int | None = None, cluster: str | None = None) -> list[str]:
    """The statements of ``collector-config/clickhouse/schema.sql`` for ``database``, with a TTL or without.

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
    for line in DDL_PATH.read_text().splitlines():
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



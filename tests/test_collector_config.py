"""The files in collector-config/: otelcol-contrib YAML, the rotel environment file, and the ClickHouse users.

- Every YAML file parses and its traces/logs/metrics pipelines use only receivers, processors, exporters (and service
  extensions) that the file defines, of component types that exist in otelcol-contrib (the allowlist below).
- The gateway's clickhouse exporter leaves the schema alone and writes exactly the tables of clickhouse/schema.sql.
- rotel.env names only environment variables that the installed ``rotel-agent start --help`` documents, and the real
  agent starts with them.
- users.sql: see ``test_users_sql_grants`` for how the grants are checked.
- The cluster variant of the DDL (``render_ddl(cluster=...)``, ``omtel schema show``): see ``test_cluster_ddl_parses``
  and ``test_cluster_ddl_distributed_in_chdb``.
- docker-compose.yaml and docker/: see ``test_compose_services_are_complete``.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from omtel_cli import omtel

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "collector-config"
SCHEMA = CONFIG / "clickhouse" / "schema.sql"
USERS = CONFIG / "clickhouse" / "users.sql"
ROTEL_ENV = CONFIG / "rotel" / "rotel.env"
COMPOSE = CONFIG / "docker-compose.yaml"
DOCKERFILE = CONFIG / "docker" / "Dockerfile"

# Component types shipped in the otelcol-contrib distribution (opentelemetry-collector-releases,
# distributions/otelcol-contrib/manifest.yaml). Only what these configs could reasonably use; add as needed.
OTELCOL_CONTRIB = {
    "receivers": {"otlp", "hostmetrics", "filelog", "prometheus", "docker_stats", "kafka", "journald"},
    "processors": {"memory_limiter", "batch", "resourcedetection", "resource", "attributes", "transform", "filter",
                   "k8sattributes", "tail_sampling", "probabilistic_sampler", "groupbyattrs"},
    "exporters": {"otlp", "otlphttp", "clickhouse", "debug", "file", "kafka", "loadbalancing", "prometheus"},
    "extensions": {"health_check", "file_storage", "pprof", "zpages", "basicauth", "bearertokenauth"},
}
SIGNALS = ("traces", "logs", "metrics")


def _yaml_files():
    """The collector configurations: every YAML file in collector-config/ but Grafana's provisioning files and the
    compose file."""
    return sorted(p for p in CONFIG.rglob("*") if p.suffix in (".yaml", ".yml") and p != COMPOSE
                  and "grafana" not in p.relative_to(CONFIG).parts)


def _ctype(name):
    """``otlphttp/gateway`` -> ``otlphttp``: the component type is the part before the first '/'."""
    return name.split("/", 1)[0]


def _ddl_tables():
    """Names of the tables (not views) that schema.sql creates, read from its CREATE TABLE statements."""
    return set(re.findall(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\{database\}\.(\w+)", SCHEMA.read_text(), re.I))


def _exporter_tables():
    """The tables of schema.sql that collectors write: not the trace index (a materialized view fills it from
    otel_traces) and not omtel_schema_version (``omtel schema apply`` keeps it)."""
    return _ddl_tables() - {"otel_traces_trace_id_ts", "omtel_schema_version"}


def test_collector_yaml_files_exist():
    names = {p.relative_to(CONFIG).as_posix() for p in _yaml_files()}
    assert {"otelcol/gateway.yaml", "otelcol/agent.yaml"} <= names


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: p.relative_to(CONFIG).as_posix())
def test_collector_yaml_pipelines_are_defined_and_exist_in_contrib(path):
    cfg = yaml.safe_load(path.read_text())
    assert isinstance(cfg, dict), f"{path} is not a YAML mapping"
    pipelines = cfg["service"]["pipelines"]
    assert set(SIGNALS) <= set(pipelines), f"{path}: pipelines {sorted(pipelines)}"
    used = {"receivers": set(), "processors": set(), "exporters": set()}
    for signal, pipe in pipelines.items():
        assert pipe.get("receivers") and pipe.get("exporters"), f"{path}: pipeline {signal} has no receivers/exporters"
        for kind in used:
            for name in pipe.get(kind) or []:
                assert name in (cfg.get(kind) or {}), f"{path}: {signal} uses {kind[:-1]} {name!r}, not defined"
                used[kind].add(name)
        if pipe.get("processors"):
            # the memory limiter only protects the collector if it runs first
            first = _ctype(pipe["processors"][0])
            assert first == "memory_limiter", f"{path}: {signal} processors {pipe['processors']}"
    for name in cfg["service"].get("extensions") or []:
        assert name in (cfg.get("extensions") or {}), f"{path}: service extension {name!r} not defined"
    for kind, allowed in OTELCOL_CONTRIB.items():
        for name in cfg.get(kind) or {}:
            assert _ctype(name) in allowed, f"{path}: {kind[:-1]} type {_ctype(name)!r} is not in otelcol-contrib"
    # a component defined but never used is a config mistake otelcol only warns about
    for kind, names in used.items():
        assert set(cfg.get(kind) or {}) == names, f"{path}: unused {kind}: {set(cfg.get(kind) or {}) - names}"


def test_gateway_clickhouse_exporter_matches_schema():
    cfg = yaml.safe_load((CONFIG / "otelcol" / "gateway.yaml").read_text())
    ch = cfg["exporters"]["clickhouse"]
    assert ch["create_schema"] is False
    assert ch["database"] == "otel"
    assert ch["endpoint"] == "${env:CLICKHOUSE_ENDPOINT}"
    assert ch["ttl"] in (0, "0", "0s")
    assert ch["retry_on_failure"]["enabled"] is True
    queue = ch["sending_queue"]
    assert queue["enabled"] is True
    assert queue["storage"] in cfg["extensions"] and _ctype(queue["storage"]) == "file_storage"
    assert queue["storage"] in cfg["service"]["extensions"]
    named = {ch["logs_table_name"], ch["traces_table_name"]} | {t["name"] for t in ch["metrics_tables"].values()}
    # every metric type has its table: a point without one would fail the whole metrics export
    assert _exporter_tables() == named, (sorted(_exporter_tables()), sorted(named))
    assert set(ch["metrics_tables"]) == {"gauge", "sum", "histogram", "exponential_histogram", "summary"}
    receivers = cfg["receivers"]["otlp"]["protocols"]
    assert receivers["grpc"]["endpoint"] == "0.0.0.0:4317" and receivers["http"]["endpoint"] == "0.0.0.0:4318"
    assert set(cfg["processors"]["resourcedetection"]["detectors"]) == {"env", "system"}


def test_agent_forwards_to_gateway_with_queue_and_retry():
    cfg = yaml.safe_load((CONFIG / "otelcol" / "agent.yaml").read_text())
    exp = cfg["exporters"]["otlphttp"]
    assert exp["endpoint"] == "${env:OTEL_GATEWAY_ENDPOINT}"
    assert exp["sending_queue"]["enabled"] is True and exp["retry_on_failure"]["enabled"] is True
    assert all(p["exporters"] == ["otlphttp"] for p in cfg["service"]["pipelines"].values())


# ---------------------------------------------------------------------------------------------------------- rotel

def _rotel_agent():
    import rotel

    agent = Path(rotel.__file__).parent / "rotel-agent"
    assert agent.exists(), f"the rotel wheel ships its agent binary; none in {agent.parent}"
    return agent


def _rotel_env():
    env = {}
    for line in ROTEL_ENV.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and key == key.strip() and re.fullmatch(r"ROTEL_[A-Z0-9_]+", key), f"bad line {line!r}"
        assert key not in env, f"{key} set twice"
        env[key] = value
    return env


@pytest.fixture(scope="module")
def rotel_help():
    """{env var: flag} as documented by ``rotel-agent start --help`` of the installed wheel."""
    out = subprocess.run([str(_rotel_agent()), "start", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    # "--flag-name <VALUE>\n  description...\n  [env: ROTEL_NAME=]": pair each env var with the flag above it.
    # The mapping is not mechanical (--clickhouse-exporter-table-prefix is ROTEL_CLICKHOUSE_TABLE_PREFIX), so the
    # documented env names are the reference, not ROTEL_X_Y <-> --x-y.
    pairs = re.findall(r"^\s+(?:-\w, )?--([a-z0-9-]+)(?:[^\n]*)\n(?:(?!^\s+--)[^\n]*\n)*?\s+\[env: (ROTEL_\w+)=",
                       out.stdout, re.M)
    documented = {env: flag for flag, env in pairs}
    assert "ROTEL_CLICKHOUSE_EXPORTER_ENDPOINT" in documented, out.stdout[:2000]
    return documented


def test_rotel_env_names_only_documented_variables(rotel_help):
    env = _rotel_env()
    unknown = sorted(set(env) - set(rotel_help))
    assert not unknown, f"not in `rotel-agent start --help`: {unknown}"
    assert env["ROTEL_EXPORTER"] == "clickhouse"
    assert env["ROTEL_CLICKHOUSE_EXPORTER_DATABASE"] == "otel"
    # rotel writes <prefix>_logs, <prefix>_traces, <prefix>_metrics_{gauge,sum,histogram,exponential_histogram,
    # summary}: the tables of schema.sql
    prefix = env["ROTEL_CLICKHOUSE_TABLE_PREFIX"]
    rotel_tables = {f"{prefix}_{t}" for t in ("logs", "traces", "metrics_gauge", "metrics_sum", "metrics_histogram",
                                              "metrics_exponential_histogram", "metrics_summary")}
    assert rotel_tables == _exporter_tables()
    assert env["ROTEL_CLICKHOUSE_EXPORTER_COMPRESSION"] == "lz4"
    assert env["ROTEL_CLICKHOUSE_EXPORTER_ASYNC_INSERT"] == "true"
    assert env["ROTEL_OTLP_GRPC_ENDPOINT"].endswith(":4317") and env["ROTEL_OTLP_HTTP_ENDPOINT"].endswith(":4318")
    for key in ("ROTEL_CLICKHOUSE_EXPORTER_USER", "ROTEL_CLICKHOUSE_EXPORTER_PASSWORD", "ROTEL_BATCH_TIMEOUT"):
        assert env[key], key


def test_rotel_readme_command_line_uses_documented_flags(rotel_help):
    text = (CONFIG / "rotel" / "README.md").read_text()
    block = re.search(r"```sh\n(rotel-agent start \\\n.*?)```", text, re.S)
    assert block, "no `rotel-agent start` command block in rotel/README.md"
    flags = re.findall(r"--([a-z0-9-]+)", block.group(1))
    assert flags and set(flags) <= set(rotel_help.values()), sorted(set(flags) - set(rotel_help.values()))
    # the command line sets the same options as rotel.env
    assert {rotel_help[k] for k in _rotel_env()} == set(flags)


def test_rotel_agent_starts_with_the_env_file(tmp_path):
    """The real agent accepts every value in rotel.env (a bad value or name makes it exit at once)."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
    env.update(_rotel_env())
    env.update(ROTEL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{ports[0]}", ROTEL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{ports[1]}",
               ROTEL_CLICKHOUSE_EXPORTER_ENDPOINT="http://127.0.0.1:9", ROTEL_PID_FILE=str(tmp_path / "rotel.pid"),
               ROTEL_LOG_FILE=str(tmp_path / "rotel.log"))
    proc = subprocess.Popen([str(_rotel_agent()), "start"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 10
        listening = False
        while time.monotonic() < deadline and proc.poll() is None and not listening:
            try:
                socket.create_connection(("127.0.0.1", ports[1]), timeout=0.2).close()
                listening = True
            except OSError:
                time.sleep(0.1)
        assert proc.poll() is None, proc.communicate(timeout=5)[0]
        assert listening, "rotel-agent did not open its OTLP/HTTP port within 10 s"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------------------- users

_PARSE_SCRIPT = r"""
import json, sys, chdb
out = []
for stmt in json.load(sys.stdin):
    lit = "'" + stmt.replace("\\", "\\\\").replace("'", "\\'") + "'"
    out.append(chdb.query("SELECT formatQuery(" + lit + ")", "TSVRaw").bytes().decode().strip())
print(json.dumps(out))
"""


def _clickhouse_format(stmts):
    """Each statement as ClickHouse's own parser normalises it (``formatQuery()``); a syntax error fails the test.
    In a subprocess, because chdb allows one data folder per process and test_store_clickhouse holds one."""
    res = subprocess.run([sys.executable, "-c", _PARSE_SCRIPT], input=json.dumps(stmts), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _users_statements():
    text = "\n".join(ln for ln in USERS.read_text().splitlines() if not ln.lstrip().startswith("--"))
    assert "{writer_password}" in text and "{reader_password}" in text
    text = text.replace("{writer_password}", "w-secret").replace("{reader_password}", "r-secret")
    return [s.strip() for s in text.split(";") if s.strip()]


def _grants(formatted):
    """{user: set of privileges on otel.*} from statements formatted by ClickHouse (``GRANT A, B ON db.* TO u``)."""
    grants = {}
    for stmt in formatted:
        m = re.fullmatch(r"GRANT (.+) ON (\S+) TO (\w+)", stmt)
        if m:
            assert m.group(2) == "otel.*", stmt
            grants.setdefault(m.group(3), set()).update(p.strip() for p in m.group(1).split(","))
    return grants


def test_users_sql_grants():
    """The writer may only insert (and describe); the reader may only select, in readonly mode.

    Which path: the DDL text, normalised by ClickHouse's own parser. The grants cannot be checked against the
    engine's access control in chdb 4.4 (embedded ClickHouse 26.9): ``CREATE USER`` fails with ACCESS_DENIED for
    chdb's ``default`` user, and even with a users.xml that gives it ``access_management`` it fails with
    ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND (clickhouse-local has only the read-only users.xml storage and ignores
    ``user_directories``), and ``EXECUTE AS`` is disabled (``allow_impersonate_user`` is not configurable there).
    So every statement of users.sql (passwords filled in) goes through ``formatQuery()`` in a chdb subprocess (a
    syntax error fails the test; a subprocess because chdb allows one data folder per process and
    test_store_clickhouse holds one), and the canonical text is checked: the reader has SELECT and nothing else, with
    readonly = 2 CONST; the writer has INSERT, no SELECT, and nothing that changes or removes tables or data.
    """
    stmts = _users_statements()
    formatted = _clickhouse_format(stmts)
    assert len(formatted) == len(stmts) == 4

    creates = {re.search(r"CREATE USER IF NOT EXISTS (\w+)", s).group(1): s for s in formatted
               if s.startswith("CREATE USER")}
    assert set(creates) == {"otel_writer", "otel_reader"}
    for user, stmt in creates.items():
        assert "IDENTIFIED WITH sha256_password BY" in stmt, stmt
        assert "DEFAULT DATABASE otel" in stmt, stmt
    assert re.search(r"SETTINGS readonly = 2 CONST\b", creates["otel_reader"]), creates["otel_reader"]
    assert "readonly" not in creates["otel_writer"]

    grants = _grants(formatted)
    assert set(grants) == {"otel_writer", "otel_reader"}
    forbidden = {"ALL", "ALTER", "DROP", "CREATE", "TRUNCATE", "OPTIMIZE", "ALTER DELETE", "ALTER UPDATE",
                 "ALTER TABLE", "DROP TABLE", "CREATE TABLE", "SYSTEM", "ACCESS MANAGEMENT"}
    assert grants["otel_reader"] == {"SELECT"}, grants["otel_reader"]
    assert "INSERT" in grants["otel_writer"]
    assert not grants["otel_writer"] & (forbidden | {"SELECT"}), grants["otel_writer"]
    assert grants["otel_writer"] <= {"INSERT", "SHOW COLUMNS"}, grants["otel_writer"]
    # nothing else in the file: no REVOKE/role tricks that would widen either user
    assert all(s.startswith(("CREATE USER", "GRANT ")) for s in formatted), formatted


# ---------------------------------------------------------------------------------------------- cluster DDL

_CREATE = re.compile(r"CREATE (DATABASE|TABLE|MATERIALIZED VIEW) IF NOT EXISTS ([\w.]+)")


def _by_name(formatted):
    """{name: formatted statement} (names are unique within one rendering)."""
    named = {}
    for stmt in formatted:
        name = _CREATE.match(stmt).group(2)
        assert name not in named, f"{name} created twice"
        named[name] = stmt
    return named


@pytest.fixture(scope="module")
def cluster_ddl():
    """(single-node, cluster) statements of the same options, both formatted by ClickHouse's parser."""
    from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl

    single, cluster = render_ddl("otel", 30), render_ddl("otel", 30, cluster="omtel")
    formatted = _clickhouse_format(single + cluster)
    return formatted[:len(single)], formatted[len(single):]


def test_cluster_ddl_parses(cluster_ddl):
    """Every statement of the cluster variant goes through ClickHouse's parser (formatQuery, in chdb), runs on the
    whole cluster, and keeps the Keeper macros for ClickHouse to fill in."""
    _, cluster = cluster_ddl
    assert cluster and all(re.match(r"CREATE .* ON CLUSTER omtel\b", s) for s in cluster), cluster
    assert all("{database}" not in s and "{ttl_days}" not in s for s in cluster)
    replicated = [s for s in cluster if "ENGINE = Replicated" in s]
    assert replicated and all("/{shard}/" in s and "'{replica}'" in s for s in replicated)


def test_cluster_ddl_has_a_local_and_a_distributed_table_per_table(cluster_ddl):
    single, cluster = (_by_name(f) for f in cluster_ddl)
    tables = {n for n, s in single.items() if s.startswith("CREATE TABLE")}
    assert {n.split(".")[1] for n in tables} == _ddl_tables()
    cluster_tables = {n for n, s in cluster.items() if s.startswith("CREATE TABLE")}
    assert cluster_tables == tables | {f"{n}_local" for n in tables}, sorted(cluster_tables)
    body = re.compile(r"\n\(\n(.*)\n\)\nENGINE = (\w+)(?:\((.*?)\))?\n(.*)", re.S)
    for name in tables:
        table = name.split(".")[1]
        s_cols, s_engine, _, s_rest = body.search(single[name]).groups()
        l_cols, l_engine, l_args, l_rest = body.search(cluster[f"{name}_local"]).groups()
        assert l_cols == s_cols, f"{name}: columns and indexes of the local table differ from the single-node table"
        assert l_rest == s_rest, f"{name}: partitioning, order, TTL or settings differ"
        assert l_engine == "Replicated" + s_engine, (name, l_engine)
        assert l_args == f"'/clickhouse/tables/{{shard}}/otel/{table}_local', '{{replica}}'", l_args
        dist = re.fullmatch(rf"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER omtel AS {name}_local\n"
                            rf"ENGINE = Distributed\('omtel', 'otel', '{table}_local', (.+)\)", cluster[name])
        assert dist, cluster[name]
        if table in ("otel_traces", "otel_traces_trace_id_ts", "otel_logs"):  # one trace stays on one shard
            assert "cityHash64(TraceId)" in dist.group(1), (name, dist.group(1))


def test_cluster_ddl_view_reads_and_writes_local_tables(cluster_ddl):
    """An insert into a Distributed table is forwarded to the shards' local tables: that is where the view fires."""
    single, cluster = (_by_name(f) for f in cluster_ddl)
    views = [n for n, s in cluster.items() if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views == [n for n, s in single.items() if s.startswith("CREATE MATERIALIZED VIEW")] == \
        ["otel.otel_traces_trace_id_ts_mv"]
    view = cluster[views[0]]
    assert " TO otel.otel_traces_trace_id_ts_local\n" in view, view
    assert re.search(r"\nFROM otel\.otel_traces_local\n", view), view


def test_cluster_ddl_substitutes_database_and_ttl():
    from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl

    stmts = render_ddl("telemetry", ttl_days=7, cluster="prod_cluster")
    assert stmts[0] == "CREATE DATABASE IF NOT EXISTS telemetry ON CLUSTER `prod_cluster`"
    assert all(re.match(r"CREATE \w+(?: VIEW)? IF NOT EXISTS telemetry\.", s) for s in stmts[1:]), stmts
    assert not any("otel." in s for s in stmts)
    # on the eight local tables of telemetry, not on the Distributed ones nor on omtel_schema_version
    assert sum("toIntervalDay(7)" in s for s in stmts) == 8
    assert sum("'/clickhouse/tables/{shard}/telemetry/" in s for s in stmts) == 9
    assert sum("Distributed('prod_cluster', 'telemetry', " in s for s in stmts) == 9
    assert not any("TTL " in s for s in render_ddl("telemetry", cluster="prod_cluster"))


def test_cluster_ddl_keeps_the_engine_family(tmp_path, monkeypatch):
    """ReplacingMergeTree(ver) becomes ReplicatedReplacingMergeTree(path, replica, ver): the engine's own arguments
    follow the Keeper path and replica name."""
    from omegaml_otel._internal.stores import clickhouse_ddl as clickhouse

    ddl = tmp_path / "schema.sql"
    ddl.write_text("CREATE TABLE IF NOT EXISTS {database}.otel_traces (\n    TraceId String,\n    ver UInt64\n"
                   ") ENGINE = ReplacingMergeTree(ver)\nORDER BY TraceId;\n")
    monkeypatch.setattr(clickhouse, "DDL_PATH", ddl)
    local, dist = clickhouse.render_ddl(cluster="c1")
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/otel/otel_traces_local', " \
           "'{replica}', ver)\nORDER BY TraceId" in local, local
    assert dist.endswith("ENGINE = Distributed('c1', 'otel', 'otel_traces_local', cityHash64(TraceId))"), dist


@pytest.mark.parametrize("name", ["", "a b", "c1; DROP TABLE x", "1cluster", "my-cluster", "`c`"])
def test_cluster_name_must_be_an_identifier(name):
    from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl

    with pytest.raises(ValueError, match="plain identifier.*remote_servers"):
        render_ddl(cluster=name)


def test_omtel_schema_show_prints_parseable_sql():
    """``omtel schema show`` connects nowhere: it prints what ``schema apply`` runs, for clickhouse-client."""
    from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl

    res = omtel("schema", "show", "--database", "telemetry", "--ttl-days", "7", "--cluster", "prod", cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.endswith(";\n")
    stmts = res.stdout[:-2].split(";\n\n")
    assert stmts == render_ddl("telemetry", 7, cluster="prod")
    single = omtel("schema", "show", cwd=ROOT)
    assert single.returncode == 0, single.stderr
    assert single.stdout[:-2].split(";\n\n") == render_ddl()
    formatted = _clickhouse_format(stmts)
    assert len(formatted) == len(stmts) and all(" ON CLUSTER prod" in s for s in formatted)
    bad = omtel("schema", "show", "--cluster", "my cluster", cwd=ROOT)
    assert bad.returncode == 2 and "remote_servers" in bad.stderr and not bad.stdout, bad


_DISTRIBUTED_SCRIPT = r"""
import json, re, sys, chdb
folder, stmts = json.load(sys.stdin)
config = folder + "/config.xml"
# one shard whose only replica is this process: tcp_port says which address is "local", so the Distributed tables
# forward to the local tables in-process instead of connecting to a server
open(config, "w").write(
    "<clickhouse><tcp_port>9000</tcp_port><remote_servers><omtel><shard>"
    "<internal_replication>true</internal_replication><replica><host>localhost</host><port>9000</port></replica>"
    "</shard></omtel></remote_servers></clickhouse>")
conn = chdb.connect(f"file:{folder}/db?config-file={config}")
cur = conn.cursor()
def q(sql):
    cur.execute(sql)
    return cur.fetchall()
for stmt in stmts:
    stmt = stmt.replace(" ON CLUSTER `omtel`", "")
    stmt = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?", r"\1(", stmt)
    q(stmt)
fg = " SETTINGS distributed_foreground_insert = 1"
q("INSERT INTO otel.otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, Duration)" + fg + " VALUES "
  "('2026-11-26 10:00:00', 'aa', '01', 'run/t', 'w', 5), ('2026-11-26 10:00:02', 'aa', '02', 'run/u', 'w', 7)")
q("INSERT INTO otel.otel_logs (Timestamp, TraceId, ServiceName, Body)" + fg + " VALUES "
  "('2026-11-26 10:00:01', 'aa', 'w', 'in a task'), ('2026-11-26 10:00:03', '', 'w', 'outside any trace')")
q("INSERT INTO otel.otel_metrics_gauge (ServiceName, MetricName, Attributes, TimeUnix, Value)" + fg + " VALUES "
  "('w', 'process.cpu.utilization', map('run', '1'), '2026-11-26 10:00:01', 0.5)")
print(json.dumps({
    "local": {t: q(f"SELECT count() FROM otel.{t}_local")[0][0]
              for t in ("otel_traces", "otel_logs", "otel_metrics_gauge", "otel_traces_trace_id_ts")},
    "trace_ts": [list(map(str, r)) for r in q("SELECT TraceId, min(Start), max(End) FROM otel.otel_traces_trace_id_ts "
                                              "GROUP BY TraceId")],
    "engines": dict(q("SELECT name, engine FROM system.tables WHERE database = 'otel'")),
    "same_columns": [t for t in ("otel_logs", "otel_traces", "otel_metrics_sum")
                     if q(f"DESCRIBE TABLE otel.{t}") == q(f"DESCRIBE TABLE otel.{t}_local")],
}))
"""


def test_cluster_ddl_distributed_in_chdb(tmp_path):
    """The cluster variant's Distributed tables and view, run by the real engine on a one-shard cluster.

    chdb (embedded ClickHouse) can define a ``remote_servers`` cluster whose only replica is itself, so the
    Distributed tables, their sharding keys and the materialized view on the local tables really run: rows
    inserted through the plain table names land in the ``_local`` tables and the view fills the trace index.
    Two parts cannot run embedded and are checked by the parser and by structure only (the tests above):
    ``ON CLUSTER`` needs the server's distributed DDL queue, and Replicated*MergeTree tables need ClickHouse
    Keeper (without one they open read-only), so here the statements run without ``ON CLUSTER`` and the local
    tables with the non-replicated engine of the same family.
    """
    from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl

    res = subprocess.run([sys.executable, "-c", _DISTRIBUTED_SCRIPT], capture_output=True, text=True, timeout=120,
                         input=json.dumps([str(tmp_path), render_ddl(ttl_days=30, cluster="omtel")]))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["local"] == {"otel_traces": 2, "otel_logs": 2, "otel_metrics_gauge": 1, "otel_traces_trace_id_ts": 1}
    assert out["trace_ts"] == [["aa", "2026-11-26 10:00:00", "2026-11-26 10:00:02"]], out["trace_ts"]
    engines = out["engines"]
    for table in _ddl_tables():
        assert engines[table] == "Distributed" and engines[f"{table}_local"] == "MergeTree", engines
    assert engines["otel_traces_trace_id_ts_mv"] == "MaterializedView"
    assert out["same_columns"] == ["otel_logs", "otel_traces", "otel_metrics_sum"]


# ---------------------------------------------------------------------------------------------- docker compose

def _compose():
    cfg = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(cfg, dict) and isinstance(cfg.get("services"), dict), "docker-compose.yaml has no services"
    return cfg


def _bind_mounts(service):
    """(host path, container path) of the service's bind mounts (``./x:/y[:ro]``), host paths resolved."""
    mounts = []
    for vol in service.get("volumes") or []:
        source, target = vol.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((CONFIG / source).resolve(), target))
    return mounts


_ENV_REF = re.compile(r"\$\{(?:env:)?([A-Za-z_]\w*)(?::-[^}]*)?\}|\$([A-Za-z_]\w*)")


def _env_refs(value):
    """Environment variables a config value reads: ``${env:X}`` (otelcol), ``${X}`` and ``$X`` (Grafana)."""
    if isinstance(value, dict):
        return set().union(*map(_env_refs, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_env_refs, value)) if value else set()
    if isinstance(value, str):
        return {a or b for a, b in _ENV_REF.findall(value)}
    return set()


def _dockerfile_copies():
    """(sources, destination) of each COPY in docker/Dockerfile."""
    copies = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            copies.append((words[:-1], words[-1]))
    return copies


def test_compose_services_are_complete():
    """docker-compose.yaml, checked without Docker (there is none where the tests run, so compose itself is not
    run here): it parses, every service has an image or a build whose Dockerfile exists, every bind-mounted host
    path exists, named volumes are declared, and every depends_on names a service, with a condition that service
    can meet (a healthcheck for service_healthy; the one-shot schema service for service_completed_successfully)."""
    cfg = _compose()
    services = cfg["services"]
    assert set(services) == {"clickhouse", "schema", "otel-collector", "grafana", "redis", "worker"}
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"{name} has neither image nor build"
        if svc.get("build"):
            context = (CONFIG / svc["build"]["context"]).resolve()
            assert context == ROOT and (context / svc["build"]["dockerfile"]).resolve() == DOCKERFILE, svc["build"]
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in (cfg.get("volumes") or {}), f"{name}: volume {source} is not declared"
        for host, _ in _bind_mounts(svc):
            assert host.exists() and ROOT in host.parents, f"{name} mounts {host}, which is not in the repository"
        depends = svc.get("depends_on") or {}
        for other, cond in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            assert other in services and other != name, f"{name} depends on unknown service {other}"
            condition = cond.get("condition", "service_started")
            assert condition in ("service_started", "service_healthy", "service_completed_successfully"), condition
            if condition == "service_healthy":
                assert services[other].get("healthcheck"), f"{name} waits for {other} to be healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert other == "schema" and services[other].get("restart") == "no", (name, other)
    assert services["schema"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for name in ("otel-collector", "grafana"):  # the users they log in as exist only after the schema service
        assert services[name]["depends_on"]["schema"]["condition"] == "service_completed_successfully"


def test_compose_sets_what_the_mounted_configs_read():
    """Each environment variable read by a mounted configuration (gateway.yaml's ``${env:X}``, the Grafana
    datasource's ``$X``) is set on the service that mounts it; the gateway's persistent queue directory is a volume;
    the Grafana dashboards are mounted where the dashboard provider looks for them."""
    services = _compose()["services"]
    checked = set()
    for name, svc in services.items():
        env = svc.get("environment") or {}
        for host, _ in _bind_mounts(svc):
            files = [host] if host.is_file() else sorted(host.rglob("*"))
            for path in (p for p in files if p.suffix in (".yaml", ".yml")):
                missing = _env_refs(yaml.safe_load(path.read_text())) - set(env)
                assert not missing, f"{name} mounts {path.relative_to(ROOT)}, which reads {sorted(missing)}: not set"
                checked.add(path.relative_to(CONFIG).as_posix())
    assert {"otelcol/gateway.yaml", "grafana/provisioning/datasources/clickhouse.yaml"} <= checked, checked

    collector = services["otel-collector"]
    gateway = dict((h.relative_to(CONFIG).as_posix(), t) for h, t in _bind_mounts(collector))["otelcol/gateway.yaml"]
    assert f"--config={gateway}" in collector["command"]
    gw = yaml.safe_load((CONFIG / "otelcol" / "gateway.yaml").read_text())
    queue_dir = gw["extensions"][gw["exporters"]["clickhouse"]["sending_queue"]["storage"]]["directory"]
    assert any(v.split(":")[1] == queue_dir and not v.startswith(".") for v in collector["volumes"]), queue_dir
    assert collector["environment"]["CLICKHOUSE_USER"] == "otel_writer"
    assert collector["environment"]["CLICKHOUSE_ENDPOINT"] == "http://clickhouse:8123"

    grafana = services["grafana"]
    mounts = {h.relative_to(CONFIG).as_posix(): t for h, t in _bind_mounts(grafana)}
    provider = yaml.safe_load((CONFIG / "grafana" / "provisioning" / "dashboards" / "omtel.yaml").read_text())
    assert mounts["grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    datasource = yaml.safe_load((CONFIG / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml").read_text())
    ds = datasource["datasources"][0]
    assert ds["type"] in grafana["environment"]["GF_INSTALL_PLUGINS"].split(",")
    assert ds["jsonData"]["host"] in services and ds["jsonData"]["username"] == "otel_reader"
    # the passwords the schema service gives the two users are the ones the collector and Grafana log in with
    schema_env = services["schema"]["environment"]
    assert collector["environment"]["CLICKHOUSE_PASSWORD"] == schema_env["OTEL_WRITER_PASSWORD"]
    assert grafana["environment"]["CLICKHOUSE_READER_PASSWORD"] == schema_env["OTEL_READER_PASSWORD"]
    assert schema_env["CLICKHOUSE_PASSWORD"] == services["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]


def test_compose_worker_sends_to_the_collector():
    services = _compose()["services"]
    worker = services["worker"]
    env = worker["environment"]
    assert worker["command"] == ["omtel", "worker"]
    assert env["OMTEL_BROKER"] == env["OMTEL_RESULT_BACKEND"] == "redis://:${REDIS_PASSWORD:-redis-secret}@redis:6379/0"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"  # the gateway's OTLP/HTTP receiver
    assert all(env[f"OTEL_{s.upper()}_EXPORTER"] == "otlp" for s in SIGNALS)
    assert "127.0.0.1:4318:4318" in services["otel-collector"]["ports"]


def _interpolated(value: str) -> str:
    """A compose value as compose reads it without a .env file: each ``${VAR:-default}`` becomes its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_compose_publishes_on_localhost_and_redis_needs_a_password():
    """Whoever reaches the broker has a worker run code (jobs, by design), whoever reaches OTLP can plant records,
    and ClickHouse holds every record: no port is published beyond the host, and Redis requires the password that
    the worker's broker and result URLs carry (docs/security.md). tests/test_security.py runs redis-server with
    these arguments."""
    services = _compose()["services"]
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name} publishes {port} on all hosts"
    redis = services["redis"]
    command = [_interpolated(c) for c in redis["command"]]
    assert command[:2] == ["redis-server", "--requirepass"] and len(command) == 3 and command[2], command
    password = command[2]
    assert _interpolated(redis["environment"]["REDISCLI_AUTH"]) == password  # the healthcheck's redis-cli logs in
    env = services["worker"]["environment"]
    for var in ("OMTEL_BROKER", "OMTEL_RESULT_BACKEND"):
        url = urlsplit(_interpolated(env[var]))
        assert (url.scheme, url.hostname, url.password) == ("redis", "redis", password), (var, env[var])


def test_compose_variables_are_in_env_example():
    """Every ``${VAR:-default}`` of docker-compose.yaml is listed in .env.example with the same default."""
    used = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", COMPOSE.read_text()))
    example = dict(ln.split("=", 1) for ln in (CONFIG / ".env.example").read_text().splitlines()
                   if ln.strip() and not ln.startswith("#"))
    assert used and used == example, (used, example)


def test_dockerfile_copies_what_exists():
    """The COPY sources exist in the build context (the repository root) and pass Dockerfile.dockerignore, and the
    image has what the compose services run (init-clickhouse, users.sql where the script reads it)."""
    copies = _dockerfile_copies()
    assert copies
    ignore = (CONFIG / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    included = {ln[1:] for ln in ignore if ln.startswith("!")}
    assert "*" in ignore
    for sources, _ in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
            assert src in included or any(src.startswith(i + "/") for i in included), f"{src} is dockerignored"
    assert (["collector-config/docker/init-clickhouse.sh"], "/usr/local/bin/init-clickhouse") in copies
    script = (CONFIG / "docker" / "init-clickhouse.sh").read_text()
    assert (["collector-config/clickhouse"], "./collector-config/clickhouse") in copies
    assert "WORKDIR /opt/omegaml-otel" in DOCKERFILE.read_text() and \
        "/opt/omegaml-otel/collector-config/clickhouse/users.sql" in script
    assert _compose()["services"]["schema"]["command"] == ["init-clickhouse"]


def test_init_clickhouse_script():
    """The schema service's script is valid sh, its Python part compiles, and it applies the schema with omtel."""
    path = CONFIG / "docker" / "init-clickhouse.sh"
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0
    text = path.read_text()
    compile(re.search(r"<<'PY'\n(.*?)\nPY\n", text, re.S).group(1), str(path), "exec")
    assert re.search(r"^omtel schema apply --store \"clickhouse://\$\{CLICKHOUSE_HOST\}:8123/otel\"", text, re.M)

"""The files in collector-config/: otelcol-contrib YAML, the rotel environment file, and the ClickHouse users.

- Every YAML file parses and its traces/logs/metrics pipelines use only receivers, processors, exporters (and service
  extensions) that the file defines, of component types that exist in otelcol-contrib (the allowlist below).
- The gateway's clickhouse exporter leaves the schema alone and writes exactly the tables of clickhouse/schema.sql.
- rotel.env names only environment variables that the installed ``rotel-agent start --help`` documents, and the real
  agent starts with them.
- users.sql: see ``test_users_sql_grants`` for how the grants are checked.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "collector-config"
SCHEMA = CONFIG / "clickhouse" / "schema.sql"
USERS = CONFIG / "clickhouse" / "users.sql"
ROTEL_ENV = CONFIG / "rotel" / "rotel.env"

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
    """The collector configurations: every YAML file in collector-config/ but Grafana's provisioning files."""
    return sorted(p for p in CONFIG.rglob("*")
                  if p.suffix in (".yaml", ".yml") and "grafana" not in p.relative_to(CONFIG).parts)


def _ctype(name):
    """``otlphttp/gateway`` -> ``otlphttp``: the component type is the part before the first '/'."""
    return name.split("/", 1)[0]


def _ddl_tables():
    """Names of the tables (not views) that schema.sql creates, read from its CREATE TABLE statements."""
    return set(re.findall(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\{database\}\.(\w+)", SCHEMA.read_text(), re.I))


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
    ddl = _ddl_tables()
    # otel_traces_trace_id_ts is filled by a materialized view from otel_traces; the exporter never names it
    assert ddl - {"otel_traces_trace_id_ts"} == named, (sorted(ddl), sorted(named))
    assert set(ch["metrics_tables"]) == {"gauge", "sum", "histogram"}
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
    # rotel writes <prefix>_logs, <prefix>_traces, <prefix>_metrics_{gauge,sum,histogram}: the tables of schema.sql
    prefix = env["ROTEL_CLICKHOUSE_TABLE_PREFIX"]
    rotel_tables = {f"{prefix}_{t}" for t in ("logs", "traces", "metrics_gauge", "metrics_sum", "metrics_histogram")}
    assert rotel_tables == _ddl_tables() - {"otel_traces_trace_id_ts"}
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
    res = subprocess.run([sys.executable, "-c", _PARSE_SCRIPT], input=json.dumps(stmts), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    formatted = json.loads(res.stdout.strip().splitlines()[-1])
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

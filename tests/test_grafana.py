"""Grafana provisioning and dashboards (collector-config/grafana): the files parse and carry what Grafana needs, and
every panel's SQL, with the datasource macros expanded, returns rows from chdb holding a scenario's data.

chdb opens one data folder per process and test_store_clickhouse holds one in this process, so the queries run in
a subprocess (tests/support/grafana_panels.py), which also holds the scenario and the macro expander.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import grafana_panels as gp

GRAFANA = gp.ROOT / "collector-config" / "grafana"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "omtel.yaml"
DS_UID, DS_TYPE = "omtel-clickhouse", "grafana-clickhouse-datasource"
EXPECTED = {"celery-tasks.json", "task-logs.json", "profiling.json", "experiments.json"}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    return gp.dashboards()


def test_dashboard_files_are_classic_json_with_the_required_fields(dashboards):
    assert set(dashboards) >= EXPECTED
    uids = [d.get("uid") for d in dashboards.values()]
    assert len(set(uids)) == len(uids), uids
    for name, dash in dashboards.items():
        assert isinstance(dash["uid"], str) and 0 < len(dash["uid"]) <= 40, name
        assert dash["title"] and isinstance(dash["title"], str), name
        assert dash["schemaVersion"] == 39, name
        assert "id" not in dash or dash["id"] is None, f"{name}: a provisioned dashboard must not pin an id"
        assert isinstance(dash.get("tags"), list) and "omegaml-otel" in dash["tags"], name
        assert {"from", "to"} <= set(dash["time"]), name
        ids = [p.get("id") for p in dash["panels"]]
        assert dash["panels"] and len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids), (name, ids)
        for panel in dash["panels"]:
            where = f"{name} panel {panel.get('id')}"
            assert panel["type"] and panel["title"], where
            grid = panel["gridPos"]
            assert set(grid) >= set("xywh") and all(isinstance(grid[k], int) for k in "xywh"), where
            assert grid["w"] > 0 and grid["h"] > 0 and 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, where
            assert panel["datasource"] == {"type": DS_TYPE, "uid": DS_UID}, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["refId"] and target["rawSql"].strip(), where
                assert target.get("datasource", panel["datasource"])["uid"] == DS_UID, where
                assert target["format"] in (0, 1, 2, 3) and target["queryType"], where
                assert "$__timeFilter(" in target["rawSql"], f"{where}: the query ignores the time range"
        for var in dash["templating"]["list"]:
            assert var["name"] and var["type"] == "query" and var["datasource"]["uid"] == DS_UID, name
            assert var["query"].strip(), name


def test_panels_do_not_overlap(dashboards):
    for name, dash in dashboards.items():
        cells: dict[tuple[int, int], int] = {}
        for panel in dash["panels"]:
            g = panel["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: panels {cells[(x, y)]} and {panel['id']} overlap"
                    cells[(x, y)] = panel["id"]


def test_datasource_provisioning_parses():
    doc = yaml.safe_load(DATASOURCE.read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["uid"] == DS_UID and ds["type"] == DS_TYPE
    data = ds["jsonData"]
    assert data["protocol"] == "http" and data["port"] == 8123 and data["host"]
    assert data["username"] == "otel_reader" and data["defaultDatabase"] == "otel"
    assert ds["secureJsonData"]["password"] == "${CLICKHOUSE_READER_PASSWORD}"
    assert "password" not in data
    assert data["logs"]["otelEnabled"] is True and data["logs"]["defaultTable"] == "otel_logs"
    assert data["logs"]["defaultDatabase"] == "otel" and data["logs"]["otelVersion"]
    assert data["traces"]["otelEnabled"] is True and data["traces"]["defaultTable"] == "otel_traces"
    assert data["traces"]["durationUnit"] == "nanoseconds"


def test_dashboard_provisioning_parses():
    doc = yaml.safe_load(PROVIDER.read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["name"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/omtel"


def test_reader_user_matches_the_datasource():
    users = (gp.ROOT / "collector-config" / "clickhouse" / "users.sql").read_text()
    assert "otel_reader" in users


def test_expander():
    sql = ("SELECT $__timeInterval(Timestamp) t FROM x WHERE $__timeFilter(l.Timestamp) AND a > $__fromTime "
           "AND b < $__toTime AND c = $__interval_s AND s IN (${service:singlequote}) AND n = '$name'")
    out = gp.expand(sql, {"service": ["w", "o'k"], "name": ["n1"]}, from_s=10, to_s=20, interval_s=60)
    assert out == ("SELECT toStartOfInterval(Timestamp, INTERVAL 60 second) t FROM x WHERE "
                   "l.Timestamp >= toDateTime64(10, 9) AND l.Timestamp <= toDateTime64(20, 9) AND "
                   "a > toDateTime(10) AND b < toDateTime(20) AND c = 60 AND s IN ('w', 'o\\'k') AND n = 'n1'")
    with pytest.raises(ValueError, match="unexpanded"):
        gp.expand("SELECT 1 WHERE x IN (${unknown:singlequote})", {})
    with pytest.raises(ValueError, match="unexpanded"):
        gp.expand("SELECT $__conditionalAll(a, $b)", {})


def test_every_panel_query_returns_rows_from_chdb(dashboards, tmp_path):
    proc = subprocess.run([sys.executable, str(Path(gp.__file__)), str(tmp_path / "chdb")], capture_output=True,
                          text=True, timeout=120, cwd=gp.ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    expected = {f"{d['uid']}/{p['id']}{t['refId']} {p['title']} [{mode}]"
                for d in dashboards.values() for p in d["panels"] for t in p["targets"] for mode in ("one", "all")}
    expected |= {f"{d['uid']}/${v['name']} [{mode}]"
                 for d in dashboards.values() for v in d["templating"]["list"] for mode in ("one", "all")}
    assert set(results) == expected
    bad = {k: v for k, v in results.items() if not (isinstance(v, int) and v > 0)}
    assert not bad, json.dumps(bad, indent=1)

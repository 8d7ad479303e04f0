"""QueryPlan validation and normalisation, and the SQL both dialects render for a plan (ClickHouse without a
server: the dialect only needs the table's layout and something with a ``url``)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from omegaml_otel._internal.export.store import StoreWriter
from omegaml_otel._internal.stores import Cond, MapKey, StoreError, schema
from omegaml_otel._internal.stores.base import OPS
from omegaml_otel._internal.stores.clickhouse import _ClickHouseDialect
from omegaml_otel._internal.stores.plan import Column, Filter, QueryPlan
from omegaml_otel._internal.stores.sqlite import _SqliteDialect

from .helpers import store_url

SINCE = datetime(2024, 1, 1)
SINCE_NS = 1_704_067_200_000_000_000
LA = "LogAttributes"


def test_unknown_table():
    with pytest.raises(ValueError, match="unknown table 'otel_nope'; use one of otel_logs, otel_traces"):
        QueryPlan.build("otel_nope")


def test_unknown_column_in_columns_and_conds():
    with pytest.raises(ValueError, match="otel_logs has no column 'Message'; columns are Timestamp, TraceId"):
        QueryPlan.build(schema.LOGS, columns=["Message"])
    with pytest.raises(ValueError, match="has no column 'Message'"):
        QueryPlan.build(schema.LOGS, conds=[Cond("Message", "eq", "x")])


def test_map_key_on_a_non_map_column():
    with pytest.raises(ValueError, match=r"otel_logs\.Body is not an attribute map; map columns are "
                                         r"ResourceAttributes, ScopeAttributes, LogAttributes"):
        QueryPlan.build(schema.LOGS, columns=[MapKey("Body", "x")])
    with pytest.raises(ValueError, match="not an attribute map"):
        QueryPlan.build(schema.LOGS, conds=[Cond("ScopeName", "eq", "x", key="k")])


def test_bad_operator():
    with pytest.raises(ValueError, match="unknown filter operator 'like'; use one of eq, ne, lt, lte, gt, gte, in"):
        Cond("Body", "like", "x")
    assert OPS == ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "startswith")


def test_default_columns_and_labels():
    plan = QueryPlan.build(schema.GAUGE)
    assert plan.labels == schema.columns(schema.GAUGE)
    assert plan.time_column == "TimeUnix" and plan.filters == () and plan.limit is None and not plan.descending
    assert plan.columns[0] == Column("ResourceAttributes", "ResourceAttributes", "map")


def test_time_bounds_become_ns_filters():
    aware = datetime(2024, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    plan = QueryPlan.build(schema.TRACES, since=SINCE, until=aware + timedelta(hours=1), limit="3", descending=True)
    assert plan.filters == (Filter("Timestamp", "gte", SINCE_NS, "time"),
                            Filter("Timestamp", "lte", SINCE_NS + 3600 * 10**9, "time"))
    assert plan.limit == 3 and plan.descending
    plan = QueryPlan.build(schema.SUM, since=5, conds=[Cond("StartTimeUnix", "in", [SINCE, 7])])
    assert plan.filters == (Filter("TimeUnix", "gte", 5, "time"), Filter("StartTimeUnix", "in", [SINCE_NS, 7], "time"))


def test_map_key_values_are_strings():
    plan = QueryPlan.build(schema.LOGS, columns=[MapKey(LA, "n")],
                           conds=[Cond(LA, "eq", 5, key="n"), Cond(LA, "in", [1, True], key="n"),
                                  Cond("SeverityNumber", "in", (9, 13))])
    assert plan.columns == (Column("LogAttributes['n']", LA, "str", "n"),)
    assert plan.filters == (Filter(LA, "eq", "5", "str", "n"), Filter(LA, "in", ["1", "True"], "str", "n"),
                            Filter("SeverityNumber", "in", [9, 13], "int"))


def _plan(empty_in=True):
    conds = [Cond("Body", "startswith", "ab")]
    if empty_in:
        conds.append(Cond(LA, "in", [], key="x"))
    conds += [Cond("SeverityNumber", "gte", 9), Cond(LA, "in", [1, 2], key="n"), Cond("Body", "contains", "b")]
    return QueryPlan.build(schema.LOGS, columns=["Timestamp", MapKey(LA, "a"), "Body"], conds=conds, since=SINCE,
                           limit=5)


def test_sqlite_sql_and_positional_params():
    d = _SqliteDialect()
    sql = d.render(_plan(), schema.LOGS)
    assert sql == (
        'SELECT "Timestamp", json_extract("LogAttributes", \'$."a"\'), "Body" FROM otel_logs '
        'WHERE "Timestamp" >= ? AND substr("Body", 1, ?) = ? AND 0 AND "SeverityNumber" >= ? '
        'AND json_extract("LogAttributes", \'$."n"\') IN (?, ?) AND instr("Body", ?) > 0 '
        'ORDER BY "Timestamp" ASC, rowid ASC LIMIT ?')
    # the empty 'in' binds nothing: one parameter per '?', in the order of the text; JSON paths are written into the
    # text (an expression index matches only literal paths)
    assert d.params == [SINCE_NS, 2, "ab", 9, "1", "2", "b", 5]
    assert sql.count("?") == len(d.params)


def test_sqlite_descending_and_bad_key():
    d = _SqliteDialect()
    plan = QueryPlan.build(schema.GAUGE, columns=["MetricName"], descending=True)
    assert d.render(plan, "otel_metrics_gauge") == \
        'SELECT "MetricName" FROM otel_metrics_gauge ORDER BY "TimeUnix" DESC, rowid DESC'
    with pytest.raises(ValueError, match="may not contain quotes"):
        _SqliteDialect().render(QueryPlan.build(schema.LOGS, columns=[MapKey(LA, 'a"b')]), schema.LOGS)


def _log_row(ts, body, sev, attrs):
    values = {"Timestamp": ts, "TraceId": "", "SpanId": "", "TraceFlags": 0, "SeverityText": "INFO",
              "SeverityNumber": sev, "ServiceName": "svc", "Body": body, "ResourceSchemaUrl": "",
              "ResourceAttributes": "{}", "ScopeSchemaUrl": "", "ScopeName": "s", "ScopeVersion": "",
              "ScopeAttributes": "{}", "LogAttributes": attrs, "EventName": ""}
    return tuple(values[c] for c in schema.columns(schema.LOGS))


def test_sqlite_params_line_up_when_executed(tmp_path):
    writer = StoreWriter(store_url(tmp_path))
    store = writer.store
    try:
        store.write(schema.LOGS, [  # each row but the hits fails exactly one condition
            _log_row(SINCE_NS - 1, "abc", 9, '{"a": "too early", "n": "1"}'),
            _log_row(SINCE_NS + 1, "abc", 9, '{"a": "hit 1", "n": "2"}'),
            _log_row(SINCE_NS + 2, "abc", 5, '{"a": "severity too low", "n": "1"}'),
            _log_row(SINCE_NS + 3, "xbc", 9, '{"a": "not starting with ab", "n": "1"}'),
            _log_row(SINCE_NS + 4, "abd", 9, '{"a": "no c", "n": "1"}'),
            _log_row(SINCE_NS + 5, "abc", 9, '{"a": "n not in (1, 2)", "n": "3"}'),
            _log_row(SINCE_NS + 6, "abcc", 13, '{"a": "hit 2", "n": "1"}'),
        ])
        kw = dict(columns=["Timestamp", MapKey(LA, "a"), "Body"], since=SINCE, limit=5)
        conds = [Cond("Body", "startswith", "ab"), Cond("SeverityNumber", "gte", 9),
                 Cond(LA, "in", [1, 2], key="n"), Cond("Body", "contains", "c")]
        hit = store.query(schema.LOGS, conds=conds, **kw)
        assert list(hit["LogAttributes['a']"]) == ["hit 1", "hit 2"]
        # the same plus an empty 'in' before the other parameters: runs (no stray parameter) and matches nothing
        empty = store.query(schema.LOGS, conds=[conds[0], Cond(LA, "in", [], key="x"), *conds[1:]], **kw)
        assert list(empty.columns) == ["Timestamp", "LogAttributes['a']", "Body"] and len(empty) == 0
        latest = store.query(schema.LOGS, conds=conds, columns=["Body"], since=SINCE, limit=1, descending=True)
        assert list(latest.Body) == ["abcc"]
    finally:
        store.close()


class _Store:
    url = "clickhouse://reader:***@ch:8123/otel"


def _layout(table=schema.LOGS, drop=()):
    return {c: "String" for c in schema.columns(table) if c not in drop}


def test_clickhouse_sql_and_typed_params():
    d = _ClickHouseDialect(_layout(), _Store(), "otel.otel_logs")
    sql = d.render(_plan(empty_in=False), "otel.otel_logs")
    assert sql == (
        "SELECT `Timestamp` AS c0, toLowCardinality(if(mapContains(`LogAttributes`, {p0:String}), "
        "`LogAttributes`[{p0:String}], NULL)) AS c1, `Body` AS c2 FROM otel.otel_logs "
        "WHERE (`Timestamp` >= fromUnixTimestamp64Nano({p1:Int64})) "
        "AND (startsWith(`Body`, {p2:String})) AND (`SeverityNumber` >= {p3:Int64}) "
        "AND (mapContains(`LogAttributes`, {p4:String}) AND `LogAttributes`[{p4:String}] IN {p5:Array(String)}) "
        "AND (position(`Body`, {p6:String}) > 0) ORDER BY `Timestamp` ASC LIMIT {p7:UInt64}")
    assert d.params == {"p0": "a", "p1": SINCE_NS, "p2": "ab", "p3": 9, "p4": "n", "p5": ["1", "2"], "p6": "b",
                        "p7": 5}


def test_clickhouse_same_plan_with_an_empty_in():
    d = _ClickHouseDialect(_layout(), _Store(), "otel.otel_logs")
    sql = d.render(_plan(), "otel.otel_logs")
    assert "AND (startsWith(`Body`, {p2:String})) AND 0 AND (`SeverityNumber` >= {p3:Int64})" in sql
    # every placeholder in the text has its value, and no value is bound without one (the empty `in` binds nothing)
    used = dict(re.findall(r"\{(p\d+):([^}]+)\}", sql))
    assert set(used) == set(d.params)
    assert [d.params[p] for p in sorted(used, key=lambda p: int(p[1:]))] == \
        ["a", SINCE_NS, "ab", 9, "n", ["1", "2"], "b", 5]
    assert used["p5"] == "Array(String)" and used["p7"] == "UInt64"


def test_clickhouse_empty_in_renders_false():
    d = _ClickHouseDialect(_layout(), _Store(), "otel.otel_logs")
    sql = d.render(QueryPlan.build(schema.LOGS, columns=["Body"], conds=[Cond("ScopeName", "in", [])]), "t")
    assert sql == "SELECT `Body` AS c0 FROM t WHERE 0 ORDER BY `Timestamp` ASC"
    assert d.params == {}


def test_clickhouse_value_types():
    d = _ClickHouseDialect(_layout(schema.GAUGE), _Store(), "otel.otel_metrics_gauge")
    plan = QueryPlan.build(schema.GAUGE, columns=["Value"], conds=[
        Cond("Value", "gt", 0.5), Cond("Flags", "in", [1, 2]), Cond("TimeUnix", "in", [SINCE_NS]),
        Cond("Attributes", "contains", "gpu"), Cond("Value", "startswith", 1)])
    sql = d.render(plan, "g")
    assert sql == (
        "SELECT `Value` AS c0 FROM g WHERE (`Value` > {p0:Float64}) AND (`Flags` IN {p1:Array(Int64)}) "
        "AND (`TimeUnix` IN arrayMap(x -> fromUnixTimestamp64Nano(x), {p2:Array(Int64)})) "
        "AND (position(toJSONString(`Attributes`), {p3:String}) > 0) "
        "AND (startsWith(toString(`Value`), {p4:String})) ORDER BY `TimeUnix` ASC")
    assert d.params == {"p0": 0.5, "p1": [1, 2], "p2": [SINCE_NS], "p3": "gpu", "p4": "1"}


def test_clickhouse_missing_optional_and_required_columns():
    d = _ClickHouseDialect(_layout(drop=("EventName", "Timestamp")), _Store(), "otel.otel_logs")
    assert d.render(QueryPlan.build(schema.LOGS, columns=["EventName", "Body"]), "t") == \
        "SELECT '' AS c0, `Body` AS c1 FROM t ORDER BY `Timestamp` ASC"
    with pytest.raises(StoreError, match="table otel.otel_logs lacks column 'Timestamp'; re-create it"):
        d.render(QueryPlan.build(schema.LOGS, columns=["Timestamp"]), "t")

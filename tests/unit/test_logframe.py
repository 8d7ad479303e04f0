"""compat.logframe: otel_logs rows -> omega-ml's log layout (levelno, text formats, repeated 'log init')."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from omegaml_otel._internal.compat.logframe import COLUMNS, EXTRA_COLUMNS, FIELDS, SELECT, to_compat
from omegaml_otel.conventions import DATASET, LEVELNO, TASK_ID

from .helpers import HOST, SERVICE, write_logs

T = pd.Timestamp("2024-03-05 10:20:30.123456789").value  # UTC
S = 10**9
DS = {DATASET: ".omega/logs"}


def _read(store, extras=()):
    select = SELECT + [FIELDS[c] for c in extras if FIELDS[c] not in SELECT]
    return store.logs(columns=select, python_strings=True)


@pytest.fixture
def local_tz(monkeypatch):
    """Set the local zone (POSIX TZ strings: no zone database needed) for the test, restored afterwards."""
    def set_tz(tz):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
    yield set_tz
    monkeypatch.undo()
    time.tzset()


def test_simple_and_python_records(tmp_path, local_tz):
    local_tz("IST-5:30")  # UTC+05:30, no daylight saving
    store = write_logs(tmp_path, [
        ("system", T - 2 * S, "SYSTEM", 9, "log init", {**DS, LEVELNO: 999}),
        ("system", T - S, "SYSTEM", 9, "log init", {**DS, LEVELNO: 999}),  # another process's: dropped
        ("simple", T, "INFO", 9, "hello", {**DS, LEVELNO: 4, TASK_ID: "task-7"}),
        ("app.module", T + 1, "WARNING", 13, "disk low", DS),
        ("app.module", T + 2, "WEIRD", 17, "custom level", DS),  # unknown name: the severity number decides
        ("simple", T + 3, "QUIET", 0, "quiet one", {**DS, LEVELNO: 0}),
        ("simple", T + 4, "DEBUG", 5, "details", {**DS, LEVELNO: 5}),
    ])
    try:
        raw = _read(store, ["taskid", "service", "trace_id"])
        df = to_compat(raw, ["taskid", "service", "trace_id"])
    finally:
        store.close()
    assert list(df.columns) == COLUMNS + ["taskid", "service", "trace_id"]
    assert list(df.msg) == ["log init", "hello", "disk low", "custom level", "quiet one", "details"]
    assert list(df.levelno) == [999, 4, 30, 40, 0, 5] and df.levelno.dtype == "int64"
    assert list(df.level) == ["SYSTEM", "INFO", "WARNING", "WEIRD", "QUIET", "DEBUG"]
    assert list(df.logger) == ["system", "simple", "app.module", "app.module", "simple", "simple"]
    assert list(df.text) == [
        "log init",
        "2024-03-05 10:20:30.123456 INFO hello",  # simple logger: UTC, microseconds
        "2024-03-05 15:50:30,123 - app.module - WARNING - disk low",  # Python: local time, milliseconds
        "2024-03-05 15:50:30,123 - app.module - WEIRD - custom level",
        "2024-03-05 10:20:30.123456 QUIET quiet one",
        "2024-03-05 10:20:30.123456 DEBUG details",
    ]
    assert set(df.hostname) == {HOST}
    assert df.created.iloc[1] == pd.Timestamp(T, unit="ns")
    assert list(df.taskid) == ["", "task-7", "", "", "", ""]
    assert set(df.service) == {SERVICE} and set(df.trace_id) == {""}
    assert all(type(t) is str for t in df.text)


def test_python_text_follows_daylight_saving(tmp_path, local_tz):
    local_tz("EST5EDT,M3.2.0,M11.1.0")
    winter = pd.Timestamp("2024-01-15 12:00:00.5").value
    summer = pd.Timestamp("2024-07-15 12:00:00.5").value
    store = write_logs(tmp_path, [("root", winter, "ERROR", 17, "w", DS), ("root", summer, "INFO", 9, "s", DS)])
    try:
        df = to_compat(_read(store))
    finally:
        store.close()
    assert list(df.text) == ["2024-01-15 07:00:00,500 - root - ERROR - w", "2024-07-15 08:00:00,500 - root - INFO - s"]
    assert list(df.levelno) == [40, 20]


def test_single_init_kept_and_hand_made_frame():
    label_host, label_levelno = FIELDS["hostname"].label, "LogAttributes['omegaml.levelno']"
    def strings(*values):  # as the store returns them with python_strings=True
        return pd.Series(values, dtype=object)

    raw = pd.DataFrame({
        "Timestamp": pd.to_datetime([T, T + S], unit="ns"), "SeverityText": strings("SYSTEM", "CRITICAL"),
        "SeverityNumber": [9, 21], "ScopeName": strings("system", "simple"), "Body": strings("log init", "fire"),
        label_host: strings("h", None), label_levelno: strings("999", "1"),
    })
    df = to_compat(raw)
    assert list(df.msg) == ["log init", "fire"] and list(df.levelno) == [999, 1]
    assert df.text.iloc[0] == "log init"
    assert df.text.iloc[1] == "2024-03-05 10:20:31.123456 CRITICAL fire"
    assert list(df.hostname) == ["h", None]


def test_extra_columns_are_known_fields():
    assert set(EXTRA_COLUMNS) <= set(FIELDS) and set(COLUMNS) <= set(FIELDS)

"""The smaller defects of a bad day, one focused test each: masked URLs, private files, strict argument checks.

The end-to-end versions (other settings, a real worker, another time zone, a 0022 umask) are in tests/test_security.py.
"""
from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta

import pandas as pd
import pytest

from omegaml_otel import telemetry
from omegaml_otel._internal.compat.logger import _text
from omegaml_otel._internal.compat.timeparse import parse_time
from omegaml_otel._internal.runtimes.jobs import JobStore, _normalize
from omegaml_otel._internal.secure import mask_url, private_dir, private_file
from omegaml_otel._internal.stores import StoreError, open_store
from omegaml_otel.settings import Settings, settings

from .helpers import write_logs


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- passwords never shown ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, shown", [
    ("clickhouse://bob:s3cret@db:8123/otel", "clickhouse://bob:***@db:8123/otel"),
    ("redis://:s3cret@broker:6379/0", "redis://:***@broker:6379/0"),
    ("amqp://guest:pa@ss@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
    ("store URL 'clickhose://u:s3cret@h/otel' is bad", "store URL 'clickhose://u:***@h/otel' is bad"),
    ("a https://x:1@a/ and b redis://:2@b/0", "a https://x:***@a/ and b redis://:***@b/0"),
    ("OMTEL_BROKER_redis://:s3cret@b/0", "OMTEL_BROKER_redis://:***@b/0"),  # glued to a word: still masked
    ("sqlite:////home/me/t.sqlite", "sqlite:////home/me/t.sqlite"),
    ("redis://broker:6379/0", "redis://broker:6379/0"),
    ("http://user@host:4318", "http://user@host:4318"),
])
def test_mask_url(text, shown):
    assert mask_url(text) == shown


def test_a_mistyped_scheme_does_not_show_the_password():
    with pytest.raises(StoreError) as info:
        open_store("clickhose://u:s3cret@h/otel")
    assert "s3cret" not in str(info.value) and "clickhose://u:***@h/otel" in str(info.value)


def test_settings_repr_masks_every_url():
    cfg = Settings(**{**vars(settings()), "store_url": "clickhouse://u:s3cret@h/otel",
                      "broker_url": "redis://:s3cret@r:6379/0", "result_backend": "redis://:s3cret@r:6379/0",
                      "clickhouse_password": "s3cret"})
    shown = repr(cfg)
    assert "s3cret" not in shown and "clickhouse://u:***@h/otel" in shown and shown.count("redis://:***@r") == 2
    assert str(cfg) == shown


# -- private files -----------------------------------------------------------------------------------------------
def test_private_dir_makes_missing_folders_0700_and_leaves_others(tmp_path):
    os.chmod(tmp_path, 0o755)
    target = private_dir(tmp_path / "a" / "b" / "c")
    assert target.is_dir()
    assert [_mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    assert _mode(tmp_path) == 0o755  # it existed: left as it was
    assert private_dir(target) == target  # exists: nothing to do


def test_private_file_is_0600_unless_it_exists(tmp_path):
    made = private_file(tmp_path / "t.sqlite")
    assert _mode(made) == 0o600 and made.read_bytes() == b""
    shared = tmp_path / "shared"
    shared.write_text("kept")
    os.chmod(shared, 0o640)
    private_file(shared)
    assert _mode(shared) == 0o640 and shared.read_text() == "kept"


def test_sqlite_store_files_are_private(tmp_path):
    store = write_logs(tmp_path / "home", [("s", 1, "INFO", 9, "x", {})])
    try:
        assert _mode(tmp_path / "home") == 0o700
        names = sorted(p.name for p in (tmp_path / "home").iterdir())
        assert names == ["t.sqlite", "t.sqlite-shm", "t.sqlite-wal"]
        assert all(_mode(tmp_path / "home" / n) == 0o600 for n in names), names
    finally:
        store.close()


def test_jobs_folder_is_private_and_names_end_where_they_end(tmp_path):
    jobs = JobStore(tmp_path / "jobs")
    jobs.put("print(1)", "reports/daily")
    assert _mode(tmp_path / "jobs") == 0o700 and _mode(tmp_path / "jobs" / "reports") == 0o700
    assert _mode(tmp_path / "jobs" / "reports" / "daily.py") == 0o600
    for bad in ("daily\n", "daily\n.py", "a/b\n"):
        with pytest.raises(ValueError, match="job name"):
            _normalize(bad)
        with pytest.raises(ValueError, match="job name"):
            jobs.put("print(2)", bad)
    assert jobs.list() == ["reports/daily"]


# -- arguments ---------------------------------------------------------------------------------------------------
def test_in_filter_needs_a_list(tmp_path):
    store = write_logs(tmp_path, [("s", 1, "INFO", 9, body, {}) for body in ("h", "x", "hx")])
    try:
        for bad in ("hx", 5, {"hx": 1}):
            with pytest.raises(ValueError, match=r"Body__in=.* needs a list of values, e.g. Body__in=\["):
                telemetry.logs(Body__in=bad, store=store)
        assert list(telemetry.logs(Body__in=["hx"], store=store).Body) == ["hx"]
        assert list(telemetry.logs(Body__in=("h", "x"), store=store).Body) == ["h", "x"]
    finally:
        store.close()


def test_unprintable_message_becomes_a_placeholder():
    class Bad:
        def __str__(self):
            raise RuntimeError("boom")

    class Worse(Exception):
        def __str__(self):
            raise RuntimeError("no")

    class Worst:
        def __str__(self):
            raise Worse()

    assert _text(Bad()) == "<unprintable Bad object: str() raised RuntimeError: boom>"
    assert _text(Worst()) == "<unprintable Worst object: str() raised Worse>"
    assert _text(12) == "12"


NOW = datetime(2026, 1, 10, 12, 0, 0)


@pytest.mark.parametrize("word, expected", [("now", NOW), (" NOW ", NOW), ("today", datetime(2026, 1, 10)),
                                            ("Today", datetime(2026, 1, 10))])
def test_now_and_today_come_from_the_reference_time_in_utc(word, expected):
    assert parse_time(word, name="end", now=NOW) == pd.Timestamp(expected)


@pytest.mark.parametrize("value", ["99999999999y", "400y", timedelta(days=10 ** 6), datetime(1, 1, 1), "3000-01-01"])
def test_out_of_range_times_name_the_argument(value):
    with pytest.raises(ValueError, match=r"^since=.* is out of range: .*leave since out"):
        parse_time(value, name="since", now=NOW)

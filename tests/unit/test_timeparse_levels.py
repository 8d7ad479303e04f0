"""compat.timeparse and compat.levels: the time and level arguments readers accept."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from omegaml_otel._internal.compat.levels import SIMPLE_LEVELS, python_level, simple_level
from omegaml_otel._internal.compat.timeparse import dtrelative, parse_time

NOW = datetime(2026, 1, 10, 12, 0, 0)


def test_timedelta_is_ago_for_since_and_ahead_for_end():
    """omega-ml: ``since = now - delta``, ``end = now + delta``."""
    assert parse_time(timedelta(hours=1), name="since", now=NOW) == pd.Timestamp("2026-01-10 11:00:00")
    assert parse_time(timedelta(hours=1), name="end", future=True, now=NOW) == pd.Timestamp("2026-01-10 13:00:00")


@pytest.mark.parametrize("value", ["5m", "-5m", "+5m", " - 5m"])
def test_the_argument_not_the_sign_gives_the_direction(value):
    """omega-ml resolves since as dtrelative('-' + since) and end as dtrelative('+' + end): the sign is dropped."""
    assert parse_time(value, name="since", now=NOW) == pd.Timestamp("2026-01-10 11:55:00")
    assert parse_time(value, name="end", future=True, now=NOW) == pd.Timestamp("2026-01-10 12:05:00")


@pytest.mark.parametrize("value", ["0y", "-0y", "+0y"])
def test_zero_years_are_the_calendar_year_bounds(value):
    assert parse_time(value, name="since", now=NOW) == pd.Timestamp("2026-01-01")
    assert parse_time(value, name="end", future=True, now=NOW) == pd.Timestamp("2026-12-31")


def test_unit_letters_as_omegaml_reads_them():
    """'M' is the month (30 days), 'm' the minute; other letters in either case."""
    assert parse_time("1M", name="since", now=NOW) == pd.Timestamp(NOW - timedelta(days=30))
    assert parse_time("1m", name="since", now=NOW) == pd.Timestamp(NOW - timedelta(minutes=1))
    assert parse_time("2H", name="since", now=NOW) == pd.Timestamp(NOW - timedelta(hours=2))
    assert parse_time("1Q", name="since", now=NOW) == pd.Timestamp(NOW - timedelta(days=90))


def test_dtrelative_keeps_the_sign():
    assert dtrelative("+5m", NOW) == NOW + timedelta(minutes=5)
    assert dtrelative("-5m", NOW) == NOW - timedelta(minutes=5)
    assert dtrelative("-5m", NOW, as_delta=True) == timedelta(minutes=-5)
    assert dtrelative("-0y", NOW, as_delta=True) == datetime(2026, 1, 1) - NOW
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    assert before <= dtrelative("0s") <= datetime.now(timezone.utc).replace(tzinfo=None)  # 'now' is UTC
    for bad in ("5", "h", "5x", 5, None):
        with pytest.raises(ValueError, match="invalid delta"):
            dtrelative(bad, NOW)


@pytest.mark.parametrize("value, expected", [
    ("5h", "2026-01-10 07:00:00"), ("-5m", "2026-01-10 11:55:00"), ("30s", "2026-01-10 11:59:30"),
    ("1.5d", "2026-01-09 00:00:00"), (" 2w ", "2025-12-27 12:00:00"), ("1y", "2025-01-10 12:00:00"),
])
def test_relative_strings_are_ago(value, expected):
    assert parse_time(value, name="since", now=NOW) == pd.Timestamp(expected)


def test_future_relative_strings():
    assert parse_time("2h", name="end", future=True, now=NOW) == pd.Timestamp("2026-01-10 14:00:00")


def test_iso_strings_and_datetimes():
    assert parse_time("2026-11-26T10:00", name="since") == pd.Timestamp("2026-11-26 10:00")
    assert parse_time("2026-11-26T10:00:00.123456789", name="since").nanosecond == 789
    assert parse_time("2026-11-26T10:00+02:00", name="since") == pd.Timestamp("2026-11-26 08:00")
    naive = datetime(2026, 5, 1, 8, 30)
    assert parse_time(naive, name="since") == pd.Timestamp(naive)
    assert parse_time(np.datetime64("2026-05-01T08:30"), name="since") == pd.Timestamp(naive)


def test_tz_aware_datetime_becomes_naive_utc():
    aware = datetime(2026, 5, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    got = parse_time(aware, name="since")
    assert got == pd.Timestamp("2026-05-01 08:30") and got.tzinfo is None
    got = parse_time(pd.Timestamp("2026-05-01 10:30", tz="America/New_York"), name="until")
    assert got == pd.Timestamp("2026-05-01 14:30") and got.tzinfo is None


def test_default_now_is_utc():
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    got = parse_time("1h", name="since")
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert pd.Timestamp(before - timedelta(hours=1)) <= got <= pd.Timestamp(after - timedelta(hours=1))


@pytest.mark.parametrize("bad", ["yesterday", "5 parsecs", "2026-13-45", 42, None, ["5h"]])
def test_bad_values_name_the_argument(bad):
    with pytest.raises(ValueError, match=r"^since=") as info:
        parse_time(bad, name="since")
    assert repr(bad) in str(info.value) and "'5h'" in str(info.value)


def test_simple_level_aliases_and_case():
    assert simple_level("WARN") == "WARNING"
    assert simple_level("fatal") == "CRITICAL"
    assert simple_level("info") == "INFO"
    assert [simple_level(name) for name in SIMPLE_LEVELS] == SIMPLE_LEVELS
    assert SIMPLE_LEVELS.index("DEBUG") > SIMPLE_LEVELS.index("INFO")  # numbers run the other way from Python's


@pytest.mark.parametrize("bad", ["VERBOSE", "", "SYSTEM"])
def test_simple_level_unknown_name(bad):
    with pytest.raises(ValueError, match="unknown log level") as info:
        simple_level(bad)
    assert "QUIET, CRITICAL, ERROR, WARNING, INFO, DEBUG" in str(info.value)


@pytest.mark.parametrize("bad", [20, None, logging.INFO])
def test_simple_level_not_a_name(bad):
    with pytest.raises(ValueError, match="must be a name"):
        simple_level(bad)


def test_python_level():
    assert python_level("info") == logging.INFO
    assert python_level("WARN") == logging.WARNING
    assert python_level("critical") == logging.CRITICAL
    assert python_level(15) == 15


@pytest.mark.parametrize("bad", ["LOUD", True, None, 2.5])
def test_python_level_errors(bad):
    with pytest.raises(ValueError, match="unknown log level"):
        python_level(bad)

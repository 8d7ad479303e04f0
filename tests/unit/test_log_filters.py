"""compat.logger's filter parsing: which filters the store applies and which are applied to the frame after."""
from __future__ import annotations

import pandas as pd
import pytest

from omegaml_otel._internal.compat.logger import _match, _parse_filters
from omegaml_otel._internal.stores import Cond


def test_store_side_filters():
    pushed, post = _parse_filters({"level": "info", "logger__ne": "other", "hostname__in": ["a", "b"],
                                   "msg__contains": "disk", "created__gte": "2026-01-01T10:00"})
    assert post == []
    assert pushed == [
        Cond("SeverityText", "eq", "INFO"),  # level names are upper-cased
        Cond("ScopeName", "ne", "other"),
        Cond("ResourceAttributes", "in", ["a", "b"], key="host.name"),
        Cond("Body", "contains", "disk"),
        Cond("Timestamp", "gte", pd.Timestamp("2026-01-01 10:00")),
    ]


def test_level_in_list_upper_cased_and_derived_fields_after_reading():
    pushed, post = _parse_filters({"level__in": ["warn", "error"], "levelno__lt": 999, "text__startswith": "2026"})
    assert pushed == [Cond("SeverityText", "in", ["WARN", "ERROR"])]
    assert post == [("levelno", "lt", 999), ("text", "startswith", "2026")]


@pytest.mark.parametrize("filters, message", [
    ({"nope": 1}, "unknown log field 'nope'"),
    ({"msg__like": "x"}, "unknown operator 'like'"),
    ({"msg__in": "abc"}, "needs a list of values"),
    ({"levelno__in": 4}, "needs a list of values"),
    ({"created": "not a time"}, "created='not a time' is not a time"),
])
def test_bad_filters(filters, message):
    with pytest.raises(ValueError, match=message):
        _parse_filters(filters)


def test_match():
    s = pd.Series([0, 4, 5, 999])
    assert list(_match(s, "in", [4, 5])) == [False, True, True, False]
    assert list(_match(s, "lt", 5)) == [True, True, False, False]
    assert list(_match(s, "gte", 5)) == [False, False, True, True]
    assert list(_match(s, "ne", 4)) == [True, False, True, True]
    assert list(_match(s, "eq", 999)) == [False, False, False, True]
    t = pd.Series(["a.b", "x a.b", "c"], dtype=object)
    assert list(_match(t, "contains", "a.b")) == [True, True, False]  # plain text, not a regex
    assert list(_match(t, "contains", ".")) == [True, True, False]
    assert list(_match(t, "startswith", "a")) == [True, False, False]

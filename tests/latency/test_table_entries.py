"""A table entry of plain numbers takes the quick path, and it refuses what the checked path refuses."""
from __future__ import annotations

import math

import pytest

from ofakit.errors import ConfigError
from ofakit.latency.table import Entry


def test_plain_and_checked_entries_agree():
    plain = Entry.from_dict({"mean": 1, "std": 0.5, "count": 20, "p10": 0.9}, "e")
    checked = Entry.from_dict({"mean": 1, "std": 0.5, "count": 20, "p10": 0.9, "note": ""}, "e")  # `note`: checked
    assert plain == checked and type(plain.mean) is float and plain.median is None


@pytest.mark.parametrize("entry, message", [
    ({"mean": -1.0}, "'mean' must not be negative"),
    ({"mean": 1.0, "ref_ms": 0}, "'ref_ms' must be positive"),
    ({"mean": math.nan}, "expected a number"),
    ({"mean": True}, "expected a number"),
    ({"mean": 1.0, "count": 3.0}, "expected an integer"),
    ({"mean": 1.0, "speed": 2.0}, "speed"),
    ({"std": 1.0}, "mean"),
])
def test_bad_entries_are_refused(entry, message):
    with pytest.raises(ConfigError, match=message):
        Entry.from_dict(entry, "e")

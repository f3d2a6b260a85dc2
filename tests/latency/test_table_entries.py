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


@pytest.mark.parametrize("entry", [
    {"mean": 1, "std": 0, "count": 20},
    {"mean": 0.5, "std": 0.01, "count": 3, "median": 0.49, "p10": 0.4, "ref_ms": 7},
    {"mean": 0.0, "count": 0},
    {"mean": 2.5e-3, "p10": 1e300},
])
def test_the_quick_path_builds_what_the_constructor_builds(entry):
    quick = Entry.from_dict(entry, "e")
    built = Entry(**{k: v if k == "count" else float(v) for k, v in entry.items()})
    assert quick == built and hash(quick) == hash(built) and repr(quick) == repr(built)
    assert vars(quick) == vars(built) and list(vars(quick)) == list(vars(built))
    assert all(type(getattr(quick, k)) is type(getattr(built, k)) for k in vars(built))
    with pytest.raises(AttributeError):  # still frozen
        quick.mean = 3.0


@pytest.mark.parametrize("entry, message", [
    ({"mean": 1.0, "std": math.inf}, "std: expected a number, got inf"),
    ({"mean": 1.0, "count": -2}, "'count' must not be negative"),
    ({"mean": 1.0, "p10": -0.1}, "'p10' must not be negative"),
])
def test_numbers_the_quick_path_leaves_to_the_checks(entry, message):
    with pytest.raises(ConfigError, match=message):
        Entry.from_dict(entry, "e")

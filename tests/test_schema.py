"""ofakit.schema: typed builders that turn a user's mapping into a frozen dataclass, naming every unknown key (with a
close match), missing key and wrong type with where it sits in the file."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.schema import build, check_keys, coerce


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int = 1
    lr: float = 0.1
    kernel: tuple[int, ...] = ()


@dataclass(frozen=True)
class Recipe:
    space: str
    stages: tuple[Stage, ...]
    seed: int = 0
    augment: bool = False
    note: str | None = None
    size: int | tuple[int, int] = 32
    extra: dict[str, Any] = field(default_factory=dict)
    arch: ArchConfig | None = None

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must not be negative, got {self.seed}")


GOOD = {"space": "tiny", "stages": [{"name": "a", "epochs": 2, "lr": 1, "kernel": [3, 5]}]}


def test_builds_nested_dataclasses_with_lists_as_tuples():
    r = build(Recipe, {**GOOD, "size": [24, 32], "extra": {"k": [1]}, "arch": {"space": "tiny", "resolution": 32,
                                                                               "depths": [1, 1]}}, "r.yaml")
    assert r.stages == (Stage("a", 2, 1, (3, 5)),) and r.size == (24, 32) and r.extra == {"k": [1]}
    assert isinstance(r.arch, ArchConfig) and r.arch.depths == (1, 1)
    assert build(Recipe, GOOD, "r.yaml").size == 32 and build(Recipe, GOOD, "r.yaml").note is None


@pytest.mark.parametrize(("data", "match"), [
    ([1], r"^r\.yaml: expected a mapping, got a list$"),
    (None, r"^r\.yaml: expected a mapping, got null$"),
    ({**GOOD, "sead": 1}, r"^r\.yaml: unknown key\(s\) 'sead' \(did you mean 'seed'\?\); allowed: space, stages, "),
    ({"space": "tiny"}, r"^r\.yaml: missing key\(s\) 'stages'$"),
    ({**GOOD, "seed": "1"}, r"^r\.yaml: seed: expected an integer, got '1'$"),
    ({**GOOD, "seed": 1.0}, r"^r\.yaml: seed: expected an integer, got 1\.0$"),
    ({**GOOD, "seed": True}, r"^r\.yaml: seed: expected an integer, got True$"),
    ({**GOOD, "augment": 1}, r"^r\.yaml: augment: expected true or false, got 1$"),
    ({**GOOD, "space": 3}, r"^r\.yaml: space: expected a string, got 3$"),
    ({**GOOD, "note": []}, r"^r\.yaml: note: expected a string, got a list$"),
    ({**GOOD, "space": None}, r"^r\.yaml: space: a value is required$"),
    ({**GOOD, "stages": "a"}, r"^r\.yaml: stages: expected a list, got 'a'$"),
    ({**GOOD, "stages": [{"name": "a", "lr": "fast"}]}, r"^r\.yaml: stages\[0\]: lr: expected a number, got 'fast'$"),
    ({**GOOD, "stages": [{"name": "a", "lr": math.nan}]}, r"^r\.yaml: stages\[0\]: lr: expected a number, got nan$"),
    ({**GOOD, "stages": [{"name": "a", "lr": math.inf}]}, r"^r\.yaml: stages\[0\]: lr: expected a number, got inf$"),
    ({**GOOD, "stages": [{"name": "a", "kernel": [3, "5"]}]},
     r"^r\.yaml: stages\[0\]: kernel\[1\]: expected an integer, got '5'$"),
    ({**GOOD, "stages": [{"name": "a", "epoch": 1}]},
     r"^r\.yaml: stages\[0\]: unknown key\(s\) 'epoch' \(did you mean 'epochs'\?\)"),
    ({**GOOD, "size": [1, 2, 3]}, r"^r\.yaml: size: expected an integer or .*, got a list$"),
    ({**GOOD, "extra": [1]}, r"^r\.yaml: extra: expected a mapping, got a list$"),
    ({**GOOD, "arch": {"space": "tiny"}}, r"^r\.yaml: arch: ArchConfig is missing key\(s\) 'resolution', 'depths'$"),
    ({**GOOD, "seed": -1}, r"^r\.yaml: seed must not be negative, got -1$"),
])
def test_wrong_data_is_one_line_saying_where(data, match):
    with pytest.raises(ConfigError, match=match) as info:
        build(Recipe, data, "r.yaml")
    assert "\n" not in str(info.value)


def test_check_keys():
    assert check_keys({"a": 1}, ("a", "b"), "x") == {"a": 1}
    assert check_keys({"z": 1, "a": 2}, None, "x", required=("a",)) == {"z": 1, "a": 2}  # any key
    with pytest.raises(ConfigError, match=r"^x: missing key\(s\) 'a'$"):
        check_keys({"z": 1}, None, "x", required=("a",))
    with pytest.raises(ConfigError, match=r"^x: unknown key\(s\) 'c', 'd'; allowed: a, b$"):
        check_keys({"a": 1, "c": 2, "d": 3}, ("a", "b"), "x")
    with pytest.raises(ConfigError, match=r"^x: expected a mapping, got 'ab'$"):
        check_keys("ab", ("a",), "x")


def test_coerce_keeps_the_values_json_gives():
    assert coerce(3, float, "x") == 3 and coerce([1, 2], tuple[int, ...], "x") == (1, 2)
    assert coerce({"a": 1.5}, dict[str, float], "x") == {"a": 1.5}
    assert coerce(None, int | None, "x") is None
    with pytest.raises(ConfigError, match=r"^x: a: expected a number, got 'y'$"):
        coerce({"a": "y"}, dict[str, float], "x")
    with pytest.raises(ConfigError, match=r"^x: expected a list of 2 items, got 3$"):
        coerce([1, 2, 3], tuple[int, int], "x")

"""ArchConfig: JSON round trips, hashing, equality that ignores skipped block slots, and input errors."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

import ofakit.arch
from ofakit.arch import ArchConfig
from ofakit.errors import ArchError, ConfigError, OfakitError
from ofakit.space import SPACES, get_space

SPACE_NAMES = SPACES.names()

# A hand-written OFA MobileNetV3 arch: stage 0 runs 2 of its 4 slots, so slots 2 and 3 are skipped.
MBV3 = {
    "space": "ofa-mbv3-w1.0",
    "resolution": 224,
    "depths": [2, 3, 4, 2, 3],
    "kernel_sizes": [3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5],
    "expand_ratios": [3, 4, 6, 3, 4, 6, 3, 4, 6, 3, 4, 6, 3, 4, 6, 3, 4, 6, 3, 4],
}


def _with(arch: ArchConfig, field: str, index: int, value: object) -> ArchConfig:
    values = list(getattr(arch, field))
    values[index] = value
    return dataclasses.replace(arch, **{field: tuple(values)})


def _other(choices: list, value: object) -> object:
    return next(c for c in choices if c != value)


# -- JSON round trip ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_round_trip_keeps_every_field(name, tmp_path):
    space = get_space(name)
    for arch in (space.largest(), space.smallest(), space.sample(random.Random(0))):
        data = arch.to_dict()
        assert json.loads(json.dumps(data)) == data
        for back in (ArchConfig.from_dict(data), ArchConfig.from_json(arch.to_json()),
                     ArchConfig.from_json(arch.to_json(indent=2))):
            assert back == arch
            assert back.to_dict() == data  # skipped slots survive too
        path = tmp_path / "arch.json"
        path.write_text(arch.to_json(indent=2))
        assert ArchConfig.load(path).to_dict() == data
        assert ArchConfig.load(str(path)) == arch


def test_to_dict_leaves_out_unused_fields_and_writes_integral_numbers_as_int():
    arch = ArchConfig.from_dict({**MBV3, "expand_ratios": [float(e) for e in MBV3["expand_ratios"]]})
    data = arch.to_dict()
    assert data == MBV3
    assert "width_mults" not in data
    assert '"expand_ratios": [3, 4, 6' in arch.to_json()
    resnet = get_space("ofa-resnet50").largest().to_dict()
    assert "kernel_sizes" not in resnet and resnet["expand_ratios"][0] == 0.35


def test_lists_become_tuples():
    arch = ArchConfig.from_dict(MBV3)
    assert isinstance(arch.depths, tuple) and isinstance(arch.kernel_sizes, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.resolution = 160


# -- hashing and equality -------------------------------------------------------------------------------------
def test_hashable_and_deduplicated_in_sets():
    a = ArchConfig.from_dict(MBV3)
    b = ArchConfig.from_dict(MBV3)
    c = dataclasses.replace(a, resolution=192)
    assert a is not b and a == b and hash(a) == hash(b)
    assert len({a, b, c}) == 2
    assert {a: "x"}[b] == "x"


def test_equality_is_the_values_and_the_space_key_ignores_skipped_slots():
    a = ArchConfig.from_dict(MBV3)
    space = get_space(a.space)
    skipped = _with(_with(a, "kernel_sizes", 3, 7), "expand_ratios", 2, 6)  # stage 0 runs slots 0 and 1 only
    assert skipped != a and len({a, skipped}) == 2  # two values ...
    assert space.key(skipped) == space.key(a)  # ... of one network
    assert space.key(_with(a, "kernel_sizes", 1, 3)) != space.key(a)  # slot 1 is active
    assert space.key(dataclasses.replace(a, depths=(3, 3, 4, 2, 3))) != space.key(a)  # now slot 2 runs


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_space_key_ignores_skipped_slots(name):
    space = get_space(name)
    arch = space.smallest()
    active = space.active_slots(arch)
    skipped = [s for s in range(len(arch.expand_ratios)) if s not in active]
    assert skipped, f"the smallest arch of {name!r} should skip some block slots"
    expands = space.choices()["expand_ratio"]
    changed = _with(arch, "expand_ratios", skipped[0], _other(expands, arch.expand_ratios[skipped[0]]))
    assert changed != arch and space.key(changed) == space.key(arch)
    changed = _with(arch, "expand_ratios", active[0], _other(expands, arch.expand_ratios[active[0]]))
    assert space.key(changed) != space.key(arch)


def test_resnet_stem_depths_that_skip_the_stem_block_have_one_key():
    space = get_space("ofa-resnet50")
    arch = space.smallest()
    assert arch.depths[0] == 0
    same = dataclasses.replace(arch, depths=(1, *arch.depths[1:]))
    assert same != arch and space.key(same) == space.key(arch)
    assert space.key(dataclasses.replace(arch, depths=(2, *arch.depths[1:]))) != space.key(arch)


def test_arch_imports_no_space_registry():
    """Equality comes from the value: arch.py needs nothing of ofakit.space (no cycle between the two)."""
    import ast

    tree = ast.parse(Path(ofakit.arch.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("ofakit.space")}


def test_archs_of_different_spaces_are_never_equal():
    a = get_space("ofa-mbv3-w1.0").largest()
    assert dataclasses.replace(a, space="ofa-mbv3-w1.2") != a


def test_unregistered_space_compares_every_field():
    a = ArchConfig("my-space", 32, (1, 2), (3, 3, 3), (2, 2, 2))
    assert a == ArchConfig("my-space", 32, (1, 2), (3, 3, 3), (2, 2, 2))
    assert a != _with(a, "kernel_sizes", 2, 5)  # no space knows which slots are skipped
    assert a != "my-space" and a.__eq__(1) is NotImplemented


# -- errors ---------------------------------------------------------------------------------------------------
def test_unknown_keys_are_named():
    with pytest.raises(ArchError, match=r"unknown ArchConfig key\(s\) 'kernel', 'width'; allowed: space, resolution"):
        ArchConfig.from_dict({**MBV3, "width": 1.0, "kernel": 3})


def test_missing_keys_are_named():
    with pytest.raises(ArchError, match=r"ArchConfig is missing key\(s\) 'resolution', 'depths'"):
        ArchConfig.from_dict({"space": "tiny"})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("depths", [2, 3.0, 4, 2, 3], r"'depths' must be a list of integers, got \[2, 3.0, 4, 2, 3\]"),
    ("depths", "2,3,4,2,3", r"'depths' must be a list of integers, got '2,3,4,2,3'"),
    ("depths", [2, True, 4, 2, 3], r"'depths' must be a list of integers"),
    ("kernel_sizes", [3.5] * 20, r"'kernel_sizes' must be a list of integers"),
    ("expand_ratios", [True] * 20, r"'expand_ratios' must be a list of numbers"),
    ("expand_ratios", ["6"] * 20, r"'expand_ratios' must be a list of numbers"),
    ("resolution", True, r"'resolution' must be a positive integer, got True"),
    ("resolution", 224.0, r"'resolution' must be a positive integer, got 224.0"),
    ("resolution", "224", r"'resolution' must be a positive integer, got '224'"),
    ("resolution", 0, r"'resolution' must be a positive integer, got 0"),
    ("space", "", r"'space' must be a non-empty string, got ''"),
    ("space", None, r"'space' must be a non-empty string, got None"),
])
def test_wrong_types_are_refused(field, value, message):
    with pytest.raises(ArchError, match=message):
        ArchConfig.from_dict({**MBV3, field: value})


def test_not_an_object():
    with pytest.raises(ArchError, match="an ArchConfig must be a JSON object, got list"):
        ArchConfig.from_json("[224, 160]")


@pytest.mark.parametrize("text", ["{", "", "{'space': 'tiny'}", '{"space": "tiny",}'])
def test_malformed_json(text):
    with pytest.raises(ConfigError, match="malformed ArchConfig JSON"):
        ArchConfig.from_json(text)


def test_malformed_file_names_the_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text('{"space": "tiny", "resolution": 32,')
    with pytest.raises(ConfigError, match=r"arch\.json: not an arch file \(not JSON: "):
        ArchConfig.load(path)
    path.write_bytes(b'{"space": "caf\xe9"}')
    with pytest.raises(ConfigError, match=r"arch\.json: not an arch file \(not UTF-8 text\)"):
        ArchConfig.load(path)
    path.write_text('{"space": "tiny", "resolution": "32", "depths": [1]}')
    with pytest.raises(ConfigError, match=r"arch\.json: 'resolution' must be a positive integer, got '32'"):
        ArchConfig.load(path)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read an arch file '.*missing\.json': No such file"):
        ArchConfig.load(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="is a folder; expected an arch file"):
        ArchConfig.load(tmp_path)


def test_errors_are_one_line_ofakit_value_errors(tmp_path):
    for call in (lambda: ArchConfig.from_json("{"), lambda: ArchConfig.from_dict({"space": "tiny"}),
                 lambda: ArchConfig.load(tmp_path / "missing.json")):
        with pytest.raises(OfakitError) as info:
            call()
        assert isinstance(info.value, ValueError)
        assert "\n" not in str(info.value)

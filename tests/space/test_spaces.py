"""Every registered search space: sampling and its variants, validation errors, encoding, counting and layer shapes."""
from __future__ import annotations

import dataclasses
import itertools
import json
import random
import warnings

import numpy as np
import pytest

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError
from ofakit.space import SPACES, SearchSpace, get_space
from ofakit.space.mbconv import MBConvSpace

SPACE_NAMES = SPACES.names()
MBCONV_NAMES = [n for n in SPACE_NAMES if isinstance(get_space(n), MBConvSpace)]


@pytest.fixture(params=SPACE_NAMES)
def space(request) -> SearchSpace:
    return get_space(request.param)


@pytest.fixture(params=MBCONV_NAMES)
def mbconv(request) -> MBConvSpace:
    return get_space(request.param)


def _with(arch: ArchConfig, field: str, index: int, value: object) -> ArchConfig:
    values = list(getattr(arch, field))
    values[index] = value
    return dataclasses.replace(arch, **{field: tuple(values)})


def _archs(space: SearchSpace, n: int = 20, seed: int = 0) -> list[ArchConfig]:
    rng = random.Random(seed)
    return [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(n))]


def _assert_valid(space: SearchSpace, arch: ArchConfig) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an in-range resolution gives no warning
        space.validate(arch)
    assert space.is_valid(arch)
    assert arch.resolution in space.resolutions


# -- registry -------------------------------------------------------------------------------------------------
def test_space_is_registered_under_its_name(space):
    assert SPACES.canonical(space.name) == space.name
    assert get_space(space.name) is space  # cached
    assert space.family in ("mbconv", "resnet")
    summary = space.summary()
    assert summary["name"] == space.name and summary["num_architectures"] == space.num_architectures()
    json.dumps(summary)  # JSON-ready for `ofakit spaces`


# -- sampling, mutation, crossover ----------------------------------------------------------------------------
def test_sample_largest_smallest_are_valid(space):
    for arch in _archs(space, n=50):
        assert arch.space == space.name
        _assert_valid(space, arch)


def test_sample_is_deterministic_given_the_rng(space):
    assert _archs(space, seed=3) == _archs(space, seed=3)
    assert len(set(_archs(space, n=20))) > 2


def test_largest_has_more_macs_and_params_than_smallest(space):
    big, small = space.largest(), space.smallest()
    assert space.macs(big) > space.macs(small) > 0
    assert space.params(big) > space.params(small) > 0
    for arch in _archs(space):
        assert space.macs(small) <= space.macs(arch) <= space.macs(big)
        assert space.params(small) <= space.params(arch) <= space.params(big)


def test_mutate_gives_valid_archs(space):
    rng = random.Random(1)
    for arch in _archs(space):
        for prob in (0.1, 0.5, 1.0):
            _assert_valid(space, space.mutate(arch, rng, prob=prob))


def test_mutate_with_prob_0_changes_nothing(space):
    for arch in _archs(space):
        child = space.mutate(arch, random.Random(0), prob=0.0)
        assert child == arch and child.to_dict() == arch.to_dict()


def test_mutate_with_prob_1_changes_something(space):
    for arch in _archs(space, n=5):
        assert any(space.mutate(arch, random.Random(seed), prob=1.0) != arch for seed in range(5))


def test_crossover_takes_each_field_from_a_parent(space):
    rng = random.Random(2)
    archs = _archs(space)
    for a, b in zip(archs, archs[1:]):
        child = space.crossover(a, b, rng)
        _assert_valid(space, child)
        assert child.resolution in (a.resolution, b.resolution)
        for field in ("depths", "kernel_sizes", "expand_ratios", "width_mults"):
            for value, x, y in zip(getattr(child, field), getattr(a, field), getattr(b, field), strict=True):
                assert value in (x, y)
        assert space.crossover(a, a, rng) == a


# -- validation -----------------------------------------------------------------------------------------------
def test_wrong_space_name(space):
    other = next(n for n in SPACE_NAMES if n != space.name)
    arch = dataclasses.replace(space.largest(), space=other)
    with pytest.raises(ArchError, match=f"arch is for space '{other}', not '{space.name}'; sample one with: "
                                        f"ofakit arch sample --space {space.name}"):
        space.validate(arch)
    assert not space.is_valid(arch)


def test_not_an_arch(space):
    with pytest.raises(ArchError, match="expected an ArchConfig, got dict"):
        space.validate(space.largest().to_dict())


@pytest.mark.parametrize("field", ["depths", "kernel_sizes", "expand_ratios", "width_mults"])
def test_wrong_lengths(space, field):
    arch = space.largest()
    n = len(getattr(arch, field))
    if n == 0:  # a field this space does not use: any value is refused
        arch = dataclasses.replace(arch, **{field: (3,)})
        with pytest.raises(ArchError, match=f"space '{space.name}' has no elastic .*; remove '{field}'"):
            space.validate(arch)
    else:
        for wrong in (n - 1, n + 1):
            short_or_long = dataclasses.replace(arch, **{field: getattr(arch, field)[:1] * wrong})
            with pytest.raises(ArchError, match=f"'{field}' has {wrong} values; space '{space.name}' needs {n}"):
                space.validate(short_or_long)
            assert not space.is_valid(short_or_long)


@pytest.mark.parametrize("fields", [((),), ((9,) * 8, (3,), (3,))], ids=["no-depths", "wrong-lengths"])
def test_malformed_archs_compare_hash_and_key_by_their_values(space, fields):
    """An arch its space refuses can still be compared, hashed and keyed (a search de-duplicates, a message prints
    it, before anything validates it): two copies built apart agree, and another value differs."""
    a, b = ArchConfig(space.name, 160, *fields), ArchConfig(space.name, 160, *fields)
    assert a is not b and a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert space.key(a) == space.key(b) and hash(space.key(a)) == hash(space.key(b))
    other = dataclasses.replace(a, resolution=176)
    assert other != a and space.key(other) != space.key(a)
    assert a != space.largest() and space.key(a) != space.key(space.largest())
    assert not space.is_valid(a)


def test_kernel_9_message():
    space = get_space("ofa-mbv3-w1.0")
    arch = _with(space.largest(), "kernel_sizes", 4, 9)
    message = "kernel size 9 at block 4 is not allowed in space 'ofa-mbv3-w1.0' (choices: 3, 5, 7)"
    with pytest.raises(ArchError) as info:
        space.validate(arch)
    assert str(info.value) == message


def test_bad_choice_at_an_active_slot(mbconv):
    slot = mbconv.stage_slots[1][0]  # first block of the second stage: every depth runs it
    kernels = ", ".join(map(str, mbconv.spec.kernel_choices))
    expands = ", ".join(map(str, mbconv.spec.expand_choices))
    with pytest.raises(ArchError, match=rf"^kernel size 9 at block {slot} is not allowed in space "
                                        rf"'{mbconv.name}' \(choices: {kernels}\)$"):
        mbconv.validate(_with(mbconv.smallest(), "kernel_sizes", slot, 9))
    with pytest.raises(ArchError, match=rf"^expand ratio 5 at block {slot} is not allowed in space "
                                        rf"'{mbconv.name}' \(choices: {expands}\)$"):
        mbconv.validate(_with(mbconv.smallest(), "expand_ratios", slot, 5))
    with pytest.raises(ArchError, match=rf"^depth 9 at stage 0 is not allowed in space '{mbconv.name}'"):
        mbconv.validate(_with(mbconv.smallest(), "depths", 0, 9))


def test_bad_choice_at_a_skipped_slot_is_ignored(mbconv):
    arch = mbconv.smallest()
    skipped = next(s for s in range(mbconv.num_slots) if s not in mbconv.active_slots(arch))
    _assert_valid(mbconv, _with(_with(arch, "kernel_sizes", skipped, 9), "expand_ratios", skipped, 5))


def test_resnet_bad_choices():
    space = get_space("ofa-resnet50")
    arch = space.largest()
    with pytest.raises(ArchError, match=r"^width multiplier 0.5 at width group 2 is not allowed in space "
                                        r"'ofa-resnet50' \(choices: 0.65, 0.8, 1.0\)$"):
        space.validate(_with(arch, "width_mults", 2, 0.5))
    with pytest.raises(ArchError, match=r"^expand ratio 0.3 at block 0 is not allowed"):
        space.validate(_with(arch, "expand_ratios", 0, 0.3))
    with pytest.raises(ArchError, match=r"^depth 3 at the stem is not allowed"):
        space.validate(_with(arch, "depths", 0, 3))
    with pytest.raises(ArchError, match=r"^depth 3 at stage 1 is not allowed"):
        space.validate(_with(arch, "depths", 2, 3))


def test_off_range_resolution_warns_but_passes(space):
    arch = dataclasses.replace(space.largest(), resolution=max(space.resolutions) + 36)
    with pytest.warns(UserWarning, match=rf"resolution {arch.resolution} is outside the search range of space "
                                         rf"'{space.name}' \({min(space.resolutions)}-{max(space.resolutions)}\)"):
        space.validate(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert space.is_valid(arch)  # quietly
    assert space.macs(arch) > space.macs(space.largest())


# -- features -------------------------------------------------------------------------------------------------
def test_encode_shape_and_values(space):
    archs = _archs(space, n=30)
    x = space.encode(archs)
    names = space.feature_names
    assert x.shape == (len(archs), len(names)) and x.dtype == np.float32
    assert len(set(names)) == len(names)
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert space.encode([]).shape == (0, len(names))


def test_batch_encode_equals_per_arch_encode(space):
    archs = _archs(space, n=30)
    assert np.array_equal(space.encode(archs), np.concatenate([space.encode([a]) for a in archs]))


def test_equal_archs_encode_equal_and_distinct_archs_differently(space):
    archs = _archs(space, n=40)
    x = space.encode(archs)
    assert len({space.key(a) for a in archs}) == len({row.tobytes() for row in x})
    arch = space.smallest()
    skipped = next(s for s in range(len(arch.expand_ratios)) if s not in space.active_slots(arch))
    twin = _with(arch, "expand_ratios", skipped, max(space.choices()["expand_ratio"]))
    assert space.key(twin) == space.key(arch) and np.array_equal(space.encode([twin]), space.encode([arch]))


def test_off_range_resolution_encodes_no_resolution(space):
    arch = dataclasses.replace(space.largest(), resolution=max(space.resolutions) + 36)
    resolution_columns = [i for i, n in enumerate(space.feature_names) if n.startswith("resolution")]
    assert len(resolution_columns) == len(space.resolutions)
    assert space.encode([arch])[0, resolution_columns].sum() == 0
    assert space.encode([space.largest()])[0, resolution_columns].sum() == 1


# -- counting -------------------------------------------------------------------------------------------------
def test_num_architectures(space):
    assert isinstance(space.num_architectures(), int) and space.num_architectures() > 1


def test_tiny_count_is_the_brute_force_count():
    space = get_space("tiny")
    s = space.spec
    n = space.num_slots
    product = [
        ArchConfig("tiny", r, depths, kernels, expands)
        for r in space.resolutions
        for depths in itertools.product(*space.stage_depths)
        for kernels in itertools.product(s.kernel_choices, repeat=n)
        for expands in itertools.product(s.expand_choices, repeat=n)
    ]
    assert len(product) == 3 * 4 * 3**4 * 2**4  # 15,552 field combinations
    assert len({space.key(a) for a in product}) == space.num_architectures() == 5292  # networks, not values


# -- layer shapes ---------------------------------------------------------------------------------------------
def test_layers_chain(space):
    for arch in _archs(space, n=5):
        layers = space.layers(arch)
        assert layers[0].input == (arch.resolution, arch.resolution, 3)
        assert layers[-1].op == "classifier" and layers[-1].output == (1, 1, space.num_classes)
        for prev, layer in zip(layers, layers[1:]):
            assert layer.input == prev.output, f"{prev} -> {layer}"


def test_layers_follow_depth(mbconv):
    for arch in _archs(mbconv, n=5):
        blocks = [layer for layer in mbconv.layers(arch) if layer.op == "mbconv"]
        assert len(blocks) == 1 + sum(arch.depths)
        assert [b.kernel for b in blocks[1:]] == [arch.kernel_sizes[s] for s in mbconv.active_slots(arch)]


# -- uniform (MBConv) -----------------------------------------------------------------------------------------
def test_uniform_extremes_are_largest_and_smallest(mbconv):
    s = mbconv.spec
    biggest = mbconv.uniform(kernel=max(s.kernel_choices), expand=max(s.expand_choices),
                             depth=max(s.depth_choices), resolution=max(mbconv.resolutions))
    least = mbconv.uniform(kernel=min(s.kernel_choices), expand=min(s.expand_choices),
                           depth=min(s.depth_choices), resolution=min(mbconv.resolutions))
    assert biggest == mbconv.largest() and least == mbconv.smallest()


def test_uniform_sets_every_slot(mbconv):
    s = mbconv.spec
    arch = mbconv.uniform(kernel=s.kernel_choices[1], expand=s.expand_choices[-1], depth=s.depth_choices[1],
                          resolution=mbconv.resolutions[0])
    assert set(arch.kernel_sizes) == {s.kernel_choices[1]} and set(arch.expand_ratios) == {s.expand_choices[-1]}
    assert all(d == s.depth_choices[1] or d == max(ds) for d, ds in zip(arch.depths, mbconv.stage_depths))


def test_uniform_refuses_a_bad_kernel(mbconv):
    s = mbconv.spec
    with pytest.raises(ArchError, match=r"kernel size 9 at block 0 is not allowed"):
        mbconv.uniform(kernel=9, expand=s.expand_choices[0], depth=max(s.depth_choices),
                       resolution=mbconv.resolutions[0])

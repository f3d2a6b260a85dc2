"""The capabilities a stage asks of a space (uniform subnets, restricted sampling, block sums, layer enumeration),
checked over every registered space; a space that lacks one says so, naming itself and the capability."""
from __future__ import annotations

import random

import numpy as np
import pytest

from ofakit.errors import CapabilityError
from ofakit.space import SPACES, get_space
from ofakit.space.genome import Genome


@pytest.mark.parametrize("name", SPACES.names())
def test_uniform_grid_holds_every_uniform_subnet_once(name):
    space = get_space(name)
    lo = min(space.resolutions)
    grid = space.uniform_grid([lo])
    assert len(grid) == len(set(grid)) and {a.resolution for a in grid} == {lo}
    for arch in grid:
        space.validate(arch)
        for field in ("kernel_sizes", "expand_ratios", "width_mults"):
            assert len(set(getattr(arch, field))) <= 1, (field, arch)
    choices = space.choices()
    settings = {(a.kernel_sizes[:1], a.expand_ratios[:1], a.width_mults[:1]) for a in grid}
    expected = 1
    for key in ("kernel_size", "expand_ratio", "width_mult"):
        expected *= len(choices.get(key, [None]))
    assert len(settings) == expected  # every kernel x expand x width setting is there
    assert space.smallest() in grid or name == "ofa-resnet50"  # (ResNet's smallest has the smallest width too)
    assert len(space.uniform_grid()) == len(grid) * len(space.resolutions)


@pytest.mark.parametrize("name", SPACES.names())
def test_uniform_depth_rule_is_one_rule(name):
    space = get_space(name)
    assert space.depth_at_most(3, (2, 3, 4)) == 3 and space.depth_at_most(5, (2, 3, 4)) == 4
    assert space.depth_at_most(1, (2, 3, 4)) == 2 and space.depth_at_most(1, (0, 2)) == 0
    for depth in space.choices()["depth"]:
        arch = [a for a in space.uniform_grid([min(space.resolutions)]) if max(a.depths[1:]) == depth]
        assert arch, f"no uniform subnet at depth {depth}"


@pytest.mark.parametrize("name", SPACES.names())
def test_restricted_sample_draws_only_what_is_opened(name):
    space = get_space(name)
    choices = space.choices()
    field, key = ("kernel_sizes", "kernel_size") if "kernel_size" in choices else ("width_mults", "width_mult")
    allowed = (max(choices[key]),)
    depth = (max(choices["depth"]),)
    rng = random.Random(0)
    for _ in range(20):
        arch = space.restricted_sample(rng, resolution=min(space.resolutions),
                                       opened={field: allowed, "depths": depth})
        space.validate(arch)
        assert set(getattr(arch, field)) == set(allowed)
        assert arch.resolution == min(space.resolutions)
    other = {space.restricted_sample(rng, resolution=min(space.resolutions), opened={}) for _ in range(20)}
    assert len(other) > 1  # nothing closed: random


@pytest.mark.parametrize("name", SPACES.names())
def test_block_sum_equals_the_per_arch_sum_where_there_is_one(name):
    space = get_space(name)
    total = space.block_sum(lambda _, layer: float(space.layer_costs(layer)[0]))
    if space.family != "mbconv":
        assert total is None  # sums go arch by arch
        return
    genome = Genome(space)
    rows = genome.sample(20, np.random.default_rng(0))
    archs = genome.decode(rows)
    assert np.allclose(total.of_rows(genome, rows), [space.macs(a) for a in archs])


@pytest.mark.parametrize("name", SPACES.names())
def test_covering_archs_hold_every_layer_or_say_what_is_missing(name):
    space = get_space(name)
    res = min(space.resolutions)
    if space.family != "mbconv":
        with pytest.raises(CapabilityError, match=rf"space '{name}' \(resnet family\) has no layer enumeration"):
            space.covering_archs(res)
        return
    covered = {layer for a in space.covering_archs(res) for layer in space.layers(a)}
    rng = random.Random(1)
    for _ in range(10):
        arch = space.restricted_sample(rng, resolution=res, opened={})
        assert set(space.layers(arch)) <= covered
    space.validate(space.reference_arch())

"""Every process draws the same subnets; stages only use the choices they have opened."""
from __future__ import annotations

import pytest

from ofakit.errors import ConfigError
from ofakit.space import get_space
from ofakit.train.config import StageConfig
from ofakit.train.sampling import plan_step


@pytest.mark.parametrize("sampler", ["largest", "progressive", "sandwich", "uniform"])
def test_plans_depend_only_on_seed_and_step(sampler):
    space = get_space("ofa-mbv3-w1.0")
    stage = StageConfig(name="s", sampler=sampler, subnets_per_step=2)
    a = [plan_step(space, stage, seed=3, step=i) for i in range(20)]
    b = [plan_step(space, stage, seed=3, step=i) for i in range(20)]
    assert a == b
    assert len({p.archs for p in a}) > 1 or sampler == "largest"
    assert len({p.resolution for p in a}) > 1
    assert all(arch.resolution == p.resolution for p in a for arch in p.archs)


@pytest.mark.parametrize("sampler", ["largest", "progressive", "sandwich", "uniform"])
def test_a_stage_resolution_limits_the_resolutions_drawn(sampler):
    space = get_space("ofa-mbv3-w1.0")
    plans = [plan_step(space, StageConfig(name="s", sampler=sampler, resolution=(160, 224)), seed=1, step=i)
             for i in range(40)]
    assert {p.resolution for p in plans} == {160, 224}
    assert all(arch.resolution == p.resolution for p in plans for arch in p.archs)
    # listing all of the space's resolutions is the same as leaving them out
    every = StageConfig(name="s", sampler=sampler, resolution=space.resolutions)
    assert ([plan_step(space, every, seed=1, step=i) for i in range(10)]
            == [plan_step(space, StageConfig(name="s", sampler=sampler), seed=1, step=i) for i in range(10)])


def test_progressive_stage_respects_open_choices():
    space = get_space("ofa-mbv3-w1.0")
    stage = StageConfig(name="depth", kernel=(3, 5, 7), expand=(6,), depth=(3, 4), subnets_per_step=2, kd_weight=1)
    for step in range(50):
        plan = plan_step(space, stage, seed=0, step=step)
        assert plan.targets == ("teacher", "teacher")
        for arch in plan.archs:
            assert set(arch.expand_ratios) == {6} and set(arch.depths) <= {3, 4}
            space.validate(arch)


def test_sandwich_has_largest_smallest_and_random_distilled_in_place():
    space = get_space("tiny")
    plan = plan_step(space, StageConfig(name="s", sampler="sandwich", subnets_per_step=2), seed=0, step=1)
    assert space.key(plan.archs[0])[2:] == space.key(space.largest())[2:]
    assert space.key(plan.archs[1])[2:] == space.key(space.smallest())[2:]
    assert plan.targets == ("label", "inplace", "inplace", "inplace")
    taught = plan_step(space, StageConfig(name="s", sampler="sandwich", subnets_per_step=2, kd_weight=1.0), seed=0,
                       step=1)
    assert taught.archs == plan.archs and taught.targets == ("teacher", "inplace", "inplace", "inplace")


def test_uniform_subnets_learn_from_the_teacher_with_a_kd_weight():
    space = get_space("tiny")
    plain = plan_step(space, StageConfig(name="u", sampler="uniform", subnets_per_step=3), seed=0, step=2)
    taught = plan_step(space, StageConfig(name="u", sampler="uniform", subnets_per_step=3, kd_weight=0.5), seed=0,
                       step=2)
    assert plain.targets == ("label",) * 3 and taught.targets == ("teacher",) * 3 and taught.archs == plain.archs


def test_resnet_stage_choices():
    space = get_space("ofa-resnet50")
    stage = StageConfig(name="w", width=(1.0,), expand=(0.35,), depth=(2,))
    arch = plan_step(space, stage, seed=0, step=0).archs[0]
    assert arch == space.largest().__class__(**{**space.largest().to_dict(), "resolution": arch.resolution})


def test_choices_outside_the_space_are_refused():
    with pytest.raises(ConfigError, match=r"stage 'k': kernel \[9\] not in the space's choices \[3, 5, 7\]"):
        plan_step(get_space("tiny"), StageConfig(name="k", kernel=(9,)), seed=0, step=0)


@pytest.mark.parametrize(("kd_weight", "target"), [(0.0, "label"), (1.0, "teacher")])
def test_fixed_stage_trains_its_arch_at_its_resolution(kd_weight, target):
    space = get_space("tiny")
    arch = space.smallest()
    stage = StageConfig(name="ft", sampler="fixed", arch=arch, kd_weight=kd_weight)
    for step in range(10):
        plan = plan_step(space, stage, seed=0, step=step)
        assert plan.archs == (arch,) and plan.resolution == arch.resolution and plan.targets == (target,)


def test_largest_stage_distils_from_the_teacher_only_with_a_kd_weight():
    space = get_space("tiny")
    plain = plan_step(space, StageConfig(name="full", sampler="largest"), seed=0, step=3)
    distilled = plan_step(space, StageConfig(name="again", sampler="largest", kd_weight=1.0), seed=0, step=3)
    assert plain.targets == ("label",) and distilled.targets == ("teacher",)
    assert plain.archs == distilled.archs

"""Which subnets a training step runs: the same on every process, derived from (seed, step) alone.

Samplers: ``largest`` (train the full network), ``progressive`` (OFA's progressive shrinking: random subnets among the
choices a stage has opened), ``sandwich`` (BigNAS: largest, smallest and N random), ``uniform`` (SPOS: one or more
uniformly random subnets), ``fixed`` (one given subnet at its own resolution: fine-tuning a specialized net, as OFA
does for 25-75 epochs). Other samplers draw one resolution per step from the space's resolutions, or from those the
stage's `resolution` lists.
"""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.space import SearchSpace
from ofakit.train.config import StageConfig


@dataclass(frozen=True)
class StepPlan:
    """The subnets of one step and how each learns: "label", "teacher" (KD from the teacher) or "inplace"
    (KD from the first subnet of the step, the largest)."""

    resolution: int
    archs: tuple[ArchConfig, ...]
    targets: tuple[str, ...]


def _open(allowed: Sequence[Any] | None, choices: Sequence[Any], what: str, stage: str) -> tuple[Any, ...]:
    if allowed is None:
        return tuple(choices)
    bad = [v for v in allowed if v not in choices]
    if bad:
        raise ConfigError(f"stage {stage!r}: {what} {bad} not in the space's choices {list(choices)}")
    return tuple(allowed)


def restricted_sample(space: SearchSpace, stage: StageConfig, rng: random.Random, resolution: int) -> ArchConfig:
    """A random arch using only the choices the stage has opened (the rest of the space stays closed)."""
    choices = space.choices()
    fields = (("kernel_sizes", "kernel_size", "kernel", stage.kernel), ("expand_ratios", "expand_ratio", "expand",
              stage.expand), ("depths", "depth", "depth", stage.depth), ("width_mults", "width_mult", "width", stage.width))
    opened = {field: _open(allowed, choices[name], what, stage.name)
              for field, name, what, allowed in fields if name in choices and allowed is not None}
    return space.restricted_sample(rng, resolution=resolution, opened=opened)


def plan_step(space: SearchSpace, stage: StageConfig, *, seed: int, step: int) -> StepPlan:
    """The subnets of global optimizer step `step` (identical on every process)."""
    rng = random.Random(f"{seed}:{step}")
    res = rng.choice(stage.resolution or space.resolutions)

    def at_res(arch: ArchConfig) -> ArchConfig:
        return dataclasses.replace(arch, resolution=res)

    target = "teacher" if stage.kd_weight > 0 else "label"  # labels, plus the teacher's soft targets when weighted
    if stage.sampler == "fixed":
        return StepPlan(stage.arch.resolution, (stage.arch,), (target,))
    if stage.sampler == "largest":
        return StepPlan(res, (at_res(space.largest()),), (target,))
    if stage.sampler == "sandwich":  # the others learn from the largest in place; the largest from the teacher too
        archs = [at_res(space.largest()), at_res(space.smallest())]
        archs += [restricted_sample(space, stage, rng, res) for _ in range(stage.subnets_per_step)]
        return StepPlan(res, tuple(archs), (target,) + ("inplace",) * (len(archs) - 1))
    if stage.sampler == "uniform":
        archs = [at_res(space.sample(rng)) for _ in range(max(1, stage.subnets_per_step))]
        return StepPlan(res, tuple(archs), (target,) * len(archs))
    archs = [restricted_sample(space, stage, rng, res) for _ in range(max(1, stage.subnets_per_step))]
    return StepPlan(res, tuple(archs), (target,) * len(archs))

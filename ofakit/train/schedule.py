"""A recipe's stages in optimizer steps: where each starts and ends, its warm-up, its learning rate at each step
(linear warm-up, then cosine decay to zero; Loshchilov & Hutter, "SGDR", ICLR 2017), and the stage at which OFA sorts
channels by importance (the first that opens an expand ratio below the largest; Cai et al., "Once-for-All", 2020)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ofakit.space import SearchSpace
from ofakit.train.config import StageConfig, TrainConfig


@dataclass(frozen=True)
class StagePlan:
    stage: StageConfig
    start: int  # global step at which the stage starts
    steps: int
    warmup: int
    steps_per_epoch: int


def plan_stages(cfg: TrainConfig, steps_per_epoch: int) -> list[StagePlan]:
    plans, start = [], 0
    for stage in cfg.stages:
        steps = stage.epochs * steps_per_epoch
        if stage.max_steps is not None:
            steps = min(steps, stage.max_steps)
        warmup = min(steps, round(stage.warmup_epochs * steps_per_epoch))
        plans.append(StagePlan(stage, start, steps, warmup, steps_per_epoch))
        start += steps
    return plans


def stage_at(plans: list[StagePlan], step: int) -> int | None:
    """The index of the stage that global step `step` (0-based, the next one to train) belongs to; None past the end."""
    return next((i for i, p in enumerate(plans) if p.start <= step < p.start + p.steps), None)


def learning_rate(plan: StagePlan, local_step: int, scale: float) -> float:
    """Linear warm-up to the stage's peak, then cosine decay to zero."""
    peak = plan.stage.lr * scale
    if local_step < plan.warmup:
        return peak * (local_step + 1) / plan.warmup
    span = max(1, plan.steps - plan.warmup)
    return 0.5 * peak * (1 + math.cos(math.pi * (local_step - plan.warmup) / span))


def opens_smaller_expand(space: SearchSpace, plans: list[StagePlan], index: int) -> bool:
    """Whether stage `index` is the first to open an expand ratio below the maximum (OFA sorts channels then)."""
    choices = space.spec.expand_choices

    def opened(stage: StageConfig) -> bool:
        if stage.sampler in ("largest", "fixed"):  # they train the channels they have: nothing smaller opens
            return False
        return stage.sampler in ("sandwich", "uniform") or min(stage.expand or choices) < max(choices)

    return opened(plans[index].stage) and not any(opened(p.stage) for p in plans[:index])

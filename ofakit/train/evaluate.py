"""Accuracy of subnets, measured the OFA way: extract, recalibrate BN on training images, evaluate on held-out ones."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from ofakit.arch import ArchConfig
from ofakit.space import SearchSpace
from ofakit.supernet import extract_subnet
from ofakit.supernet.calibrate import recalibrate_bn
from ofakit.train.config import StageConfig
from ofakit.train.data import ArrayDataset, iterate_batches


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 256
    max_batches: int | None = None  # cap on validation batches (a seeded random subset; None: all)
    recalibration_batches: int = 8  # training batches (no augmentation) for BN statistics
    recalibration_batch_size: int = 64
    seed: int = 0


def recalibrate(model: torch.nn.Module, train: ArrayDataset, resolution: int, cfg: EvalConfig, *, device: str = "cpu",
                memory: torch.memory_format = torch.contiguous_format) -> torch.nn.Module:
    """`model` (on `device`) with its BN statistics re-estimated on `cfg.recalibration_batches` seeded batches of
    unaugmented training images at `resolution`; returned in eval mode."""
    recalibrate_bn(model, (x.to(memory_format=memory) for x, _ in iterate_batches(
        train, cfg.recalibration_batch_size, resolution=resolution, shuffle=True, seed=cfg.seed, device=device,
        limit=cfg.recalibration_batches)))
    return model


@torch.no_grad()
def evaluate_subnet(supernet: torch.nn.Module, arch: ArchConfig, train: ArrayDataset, val: ArrayDataset,
                    cfg: EvalConfig, *, device: str = "cpu", channels_last: bool = False) -> float:
    """Top-1 accuracy (0-1) of `arch` on `val` after BN recalibration; the supernet itself is not modified."""
    memory = torch.channels_last if channels_last else torch.contiguous_format
    sub = recalibrate(extract_subnet(supernet, arch).to(device=device, memory_format=memory), train, arch.resolution,
                      cfg, device=device, memory=memory)
    correct = total = 0
    # A cap scores a seeded random subset, the same for every subnet: data sets stored sorted by class (CIFAR-10's
    # test split, ofakit's held-out split) would otherwise be scored on their first few classes only.
    for x, y in iterate_batches(val, cfg.batch_size, resolution=arch.resolution, device=device,
                                shuffle=cfg.max_batches is not None, seed=cfg.seed, limit=cfg.max_batches):
        correct += int((sub(x.to(memory_format=memory)).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def evaluate_stage(space: SearchSpace, supernet: torch.nn.Module, stage: StageConfig, train: ArrayDataset,
                   val: ArrayDataset, cfg: EvalConfig, *, random_subnets: int, device: str = "cpu",
                   channels_last: bool = False) -> dict[str, Any]:
    """Top-1, MACs and arch of the subnets a stage ends with: its one subnet (a fixed stage), or the largest, the
    smallest and `random_subnets` random ones (drawn from the seed and the stage's name)."""
    rng = random.Random(f"{cfg.seed}:eval:{stage.name}")
    if stage.arch is not None:
        archs = {"subnet": stage.arch}
    else:
        archs = {"largest": space.largest(), "smallest": space.smallest()}
        for i in range(random_subnets):
            archs[f"random{i}"] = space.sample(rng)
    results = {}
    for name, arch in archs.items():
        acc = evaluate_subnet(supernet, arch, train, val, cfg, device=device, channels_last=channels_last)
        results[name] = {"top1": round(acc, 4), "macs": space.macs(arch), "arch": arch.to_dict()}
    return results

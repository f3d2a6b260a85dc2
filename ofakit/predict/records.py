"""Accuracy records for fitting the accuracy predictor, appended to a JSONL file so that a killed run resumes where
it stopped: subnets spread over the MACs range (and, on request, the space's uniform subnets), each recalibrated and
evaluated once. (Latency records are measured in `ofakit.latency.measure`.)
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.io import append_jsonl, read_jsonl
from ofakit.space import SearchSpace

RECORDS = "accuracy_records.jsonl"


def spread_over_macs(space: SearchSpace, n: int, rng: random.Random, pool: int = 20) -> list[ArchConfig]:
    """n archs of distinct networks (`SearchSpace.key`) whose MACs cover the space's range evenly (fewer when a
    target's candidates are all networks chosen already).

    Plain random sampling piles up in the middle of the range, so for each of n evenly spaced MACs targets the
    candidates are random mutations of the largest (high targets) or smallest (low targets) subnet, redrawing a
    share of fields that grows towards the middle, and the candidate closest to the target is kept. Two archs that
    differ only in slots their depths skip are one network: one of them is kept, so no record repeats another (a
    held-out subnet that repeats a fitted one would flatter the predictor).
    """
    lo, hi = space.macs(space.smallest()), space.macs(space.largest())
    chosen: dict[tuple, ArchConfig] = {}
    for i in range(n):
        level = (i + 0.5) / n
        target = lo + (hi - lo) * level
        start = space.largest() if level > 0.5 else space.smallest()
        redraw = min(1.0, 0.1 + 1.0 - abs(2 * level - 1))
        candidates = [space.mutate(start, rng, redraw) for _ in range(pool)]
        best = min((a for a in candidates if space.key(a) not in chosen), key=lambda a: abs(space.macs(a) - target),
                   default=None)
        if best is not None:
            chosen[space.key(best)] = best
    return list(chosen.values())


def one_per_network(space: SearchSpace, archs: Sequence[ArchConfig]) -> list[ArchConfig]:
    """The first arch of each network (`SearchSpace.key`) among `archs`, in their order."""
    out: dict[tuple, ArchConfig] = {}
    for arch in archs:
        out.setdefault(space.key(arch), arch)
    return list(out.values())


def uniform_grid(space: SearchSpace, resolutions: Sequence[int] = (), count: int = 3) -> list[ArchConfig]:
    """Every uniform subnet (one kernel, expand ratio and depth everywhere, `SearchSpace.uniform_grid`) at up to `count`
    resolutions spread over `resolutions` (default: the space's; smallest, largest and between).

    Random samples almost never hold these (one kernel in all 20 blocks: 3^-20), so a predictor fitted on random
    samples alone extrapolates there, and a search then misjudges the plainest archs of the space.
    """
    res = sorted(resolutions or space.resolutions)
    picks = sorted({res[round(i * (len(res) - 1) / max(1, count - 1))] for i in range(count)})
    return space.uniform_grid(picks)


def read_records(path: Path, evaluation: dict[str, Any] | None = None) -> dict[ArchConfig, float]:
    """Records stored so far (lines that do not parse, torn by a kill, are skipped wherever they are).

    With `evaluation` (how accuracies are measured: data, images, calibration), records measured another way are
    refused with a ConfigError rather than mixed in: accuracies on 2,048 and on 5,000 images are not comparable.
    """
    out: dict[ArchConfig, float] = {}
    for record in read_jsonl(path, "an accuracy records file", _record, lenient=True):
        if record is None:
            continue
        arch, top1, measured = record
        if evaluation is not None and measured != evaluation:
            raise ConfigError(
                f"{path} holds accuracies measured with {measured or 'unrecorded settings'}, not "
                f"{evaluation}; run with the same --data/--val-batches/--calibration-batches/--seed to resume, or "
                f"move {path.name} aside to start over")
        out[arch] = top1
    return out


def _record(data: Any) -> tuple[ArchConfig, float, Any] | None:
    """(arch, top-1, evaluation) of a record line; None for a line without them (skipped, as a torn line is). A
    top-1 that is not a fraction in [0, 1] is an error (`read_jsonl` names the file and line)."""
    try:
        arch, top1 = ArchConfig.from_dict(data["arch"]), float(data["top1"])
    except (KeyError, TypeError, ValueError):
        return None
    if not 0.0 <= top1 <= 1.0:  # (False for NaN too)
        raise ConfigError(f"top1 {data['top1']!r} is not a top-1 fraction in [0, 1]; fix or delete the line")
    return arch, top1, data.get("evaluation")


def append_record(path: Path, arch: ArchConfig, top1: float, evaluation: dict[str, Any] | None = None) -> None:
    record: dict[str, Any] = {"arch": arch.to_dict(), "top1": top1}
    if evaluation is not None:
        record["evaluation"] = evaluation
    append_jsonl(path, record)


# -- latency ----------------------------------------------------------------------------------------------------

"""(arch, accuracy) records for fitting accuracy predictors: subnets spread over the MACs range, each recalibrated
and evaluated once, appended to a JSONL file so that a killed run resumes where it stopped."""
from __future__ import annotations

import json
import random
from pathlib import Path

from ofakit.arch import ArchConfig
from ofakit.space import SearchSpace

RECORDS = "accuracy_records.jsonl"


def spread_over_macs(space: SearchSpace, n: int, rng: random.Random, pool: int = 20) -> list[ArchConfig]:
    """n distinct archs whose MACs cover the space's range evenly.

    Plain random sampling piles up in the middle of the range, so for each of n evenly spaced MACs targets the
    candidates are random mutations of the largest (high targets) or smallest (low targets) subnet, redrawing a
    share of fields that grows towards the middle, and the candidate closest to the target is kept.
    """
    lo, hi = space.macs(space.smallest()), space.macs(space.largest())
    chosen: dict[ArchConfig, None] = {}
    for i in range(n):
        level = (i + 0.5) / n
        target = lo + (hi - lo) * level
        start = space.largest() if level > 0.5 else space.smallest()
        redraw = min(1.0, 0.1 + 1.0 - abs(2 * level - 1))
        candidates = [space.mutate(start, rng, redraw) for _ in range(pool)]
        best = min((a for a in candidates if a not in chosen), key=lambda a: abs(space.macs(a) - target),
                   default=candidates[0])
        chosen[best] = None
    return list(chosen)


def read_records(path: Path) -> dict[ArchConfig, float]:
    """Records stored so far (a torn last line from a kill is ignored)."""
    out: dict[ArchConfig, float] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            data = json.loads(line)
            out[ArchConfig.from_dict(data["arch"])] = float(data["top1"])
        except (json.JSONDecodeError, KeyError, ValueError):
            continue
    return out


def append_record(path: Path, arch: ArchConfig, top1: float) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps({"arch": arch.to_dict(), "top1": top1}) + "\n")
        fh.flush()

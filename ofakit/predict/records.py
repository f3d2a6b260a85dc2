"""Records for fitting predictors, appended to a JSONL file so that a killed run resumes where it stopped.

- (arch, accuracy): subnets spread over the MACs range (and, on request, the space's uniform subnets), each
  recalibrated and evaluated once;
- (arch, measured latency, reference latency): random subnets measured end to end on a device, group by group, with
  the latency table's reference model timed in each group (`ofakit.latency.validate.measure_groups`).
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.io import append_jsonl, read_jsonl
from ofakit.space import SearchSpace

if TYPE_CHECKING:
    from ofakit.latency.devices import DeviceSpec
    from ofakit.latency.table import LatencyTable
    from ofakit.latency.validate import ValidateConfig

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


def uniform_grid(space: SearchSpace, resolutions: Sequence[int] = (), count: int = 3) -> list[ArchConfig]:
    """Every uniform subnet (one kernel, expand ratio and depth everywhere, `space.uniform`) at up to `count`
    resolutions spread over `resolutions` (default: the space's; smallest, largest and between).

    Random samples almost never hold these (one kernel in all 20 blocks: 3^-20), so a predictor fitted on random
    samples alone extrapolates there, and a search then misjudges the plainest archs of the space.
    """
    if not hasattr(space, "uniform"):
        raise ConfigError(f"space {space.name!r} has no uniform subnets (MBConv spaces have)")
    s = space.spec
    res = sorted(resolutions or space.resolutions)
    picks = sorted({res[round(i * (len(res) - 1) / max(1, count - 1))] for i in range(count)})
    depths = max(space.stage_depths, key=len)  # the elastic stages' choices (fixed stages keep theirs)
    return list(dict.fromkeys(space.uniform(kernel=k, expand=e, depth=d, resolution=r)
                              for r in picks for d in depths for k in s.kernel_choices for e in s.expand_choices))


def read_records(path: Path, evaluation: dict[str, Any] | None = None) -> dict[ArchConfig, float]:
    """Records stored so far (a torn last line from a kill is ignored).

    With `evaluation` (how accuracies are measured: data, images, calibration), records measured another way are
    refused with a ConfigError rather than mixed in: accuracies on 2,048 and on 5,000 images are not comparable.
    """
    out: dict[ArchConfig, float] = {}
    for data in read_jsonl(path):
        try:
            arch, top1 = ArchConfig.from_dict(data["arch"]), float(data["top1"])
        except (KeyError, TypeError, ValueError):
            continue
        if evaluation is not None and data.get("evaluation") != evaluation:
            raise ConfigError(
                f"{path} holds accuracies measured with {data.get('evaluation') or 'unrecorded settings'}, not "
                f"{evaluation}; run with the same --data/--val-batches/--calibration-batches/--seed to resume, or "
                f"move {path.name} aside to start over")
        out[arch] = top1
    return out


def append_record(path: Path, arch: ArchConfig, top1: float, evaluation: dict[str, Any] | None = None) -> None:
    record: dict[str, Any] = {"arch": arch.to_dict(), "top1": top1}
    if evaluation is not None:
        record["evaluation"] = evaluation
    append_jsonl(path, record)


# -- latency ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyRecord:
    """One subnet measured end to end: the table's statistic (mean of two passes), and the table's reference model
    measured in the same group (None when the table has no reference), which tells the machine's drift."""

    arch: ArchConfig
    measured_ms: float
    reference_ms: float | None = None

    def to_dict(self, device: str) -> dict[str, Any]:
        return {"device": device, "arch": self.arch.to_dict(), "measured_ms": self.measured_ms,
                "reference_ms": self.reference_ms}


def read_latency_records(path: Path, device: str, space: str) -> dict[ArchConfig, LatencyRecord]:
    """Records stored so far (a torn last line from a kill is ignored); a record of another device or space means
    the file belongs to another fit, which is a ConfigError."""
    out: dict[ArchConfig, LatencyRecord] = {}
    for i, data in enumerate(read_jsonl(path), 1):
        try:
            arch = ArchConfig.from_dict(data["arch"])
            ref = data.get("reference_ms")
            record = LatencyRecord(arch, float(data["measured_ms"]), None if ref is None else float(ref))
        except (KeyError, TypeError, ValueError):
            continue
        if data.get("device") != device or arch.space != space:
            raise ConfigError(f"{path}: record {i} is of device {data.get('device')!r} and space {arch.space!r}, "
                              f"not {device!r} and {space!r}; pass another --records file")
        out[arch] = record
    return out


def measure_latency_records(device: DeviceSpec, space: SearchSpace, table: LatencyTable, archs: Sequence[ArchConfig],
                            path: Path, cfg: ValidateConfig, *,
                            on_group: Callable[[int, int, int], None] | None = None) -> list[LatencyRecord]:
    """Records of `archs`: those already in `path`, and the others measured now, appended group by group.

    Args:
        on_group: called after each group with (records done, records wanted, records measured by this call).
    """
    from ofakit.latency.validate import measure_groups

    done = read_latency_records(path, device.name, space.name)
    todo = [a for a in archs if a not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    measured = 0
    for group in measure_groups(device, space, table, todo, cfg):
        for arch, ms in zip(group.archs, group.measured):
            done[arch] = LatencyRecord(arch, ms, group.reference_level)
            append_jsonl(path, done[arch].to_dict(device.name))
        measured += len(group.archs)
        if on_group:
            on_group(len(archs) - len(todo) + measured, len(archs), measured)
    return list(done.values())

"""A device's op model (`ofakit.predict.op_model`) as a latency Estimator (`ofakit.latency.estimate`): found in the
table folders, checked against the table it was fitted on, and summed over the layers of subnets of an MBConv space,
whole batches and genome rows at once (`ofakit.space.additive.BlockSum`), so a search is as fast as with the LUT.
A calibrated phone (`ofakit.predict.phones`) is the same estimator with a factor.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.latency.table import LatencyTable, find_table, how_to_profile, table_dirs
from ofakit.predict.latency import arch_digest
from ofakit.predict.op_model import SUFFIX, OpModel, how_to_fit
from ofakit.space import SearchSpace, get_space
from ofakit.space.additive import Additive, BlockSum
from ofakit.space.genome import Genome
from ofakit.space.mbconv import MBConvSpace


class OpModelEstimator:
    """The Estimator (`ofakit.latency.estimate`) of an op model for one MBConv space, optionally times a
    calibration `factor` (a phone's published nets over the model's estimates, `ofakit.predict.phones`).

    estimate(arch) = scale * factor * (sum over layers of model.layer_ms + call overhead); vectorized over archs
    and genome rows through a block sum, so a search is as fast as with the LUT.

    Args:
        model: the op model.
        space: the space to estimate; must be an MBConv space.
        factor: calibration factor.
        name: the estimator's name in reports ("op-model", "calibrated").
        resolution_range: the input resolutions it answers for (default: the model's).
        info: what reports say about where the numbers come from.
        fitted: digests (`ofakit.predict.latency.arch_digest`) of subnets the estimate was fitted on.
        table: the device's table for reports, if it has one (None: a model without a table of the device).
        path: the model file (default: the op model's).
    """

    def __init__(self, model: OpModel, space: SearchSpace, *, factor: float = 1.0, name: str = "op-model",
                 resolution_range: tuple[int, int] | None = None, info: Mapping[str, Any] | None = None,
                 fitted: Iterable[str] = (), table: LatencyTable | None = None, path: Path | None = None) -> None:
        if not isinstance(space, MBConvSpace):
            raise ConfigError(f"an op model estimates MBConv spaces; space {space.name!r} is a {space.family} space")
        self.model = model
        self.space = space
        self.factor = float(factor)
        self.name = name
        self.info = dict(info or {})
        self.table = table
        self.path = path or model.path
        self.resolution_range = tuple(resolution_range or model.meta.resolution_range)
        self._fitted = frozenset(fitted)
        self._sum = BlockSum(space, model.layer_ms)
        self._overhead = model.overhead_ms

    def _check(self, resolutions: Iterable[int]) -> None:
        lo, hi = self.resolution_range
        bad = sorted({int(r) for r in resolutions if not lo <= r <= hi})
        if bad:
            device = self.info.get("device", self.model.device)
            raise LatencyLookupError(
                f"the latency model of device {device!r} answers for input resolutions {lo}-{hi} (what was measured "
                f"and checked); {bad[0]} is outside: measure subnets at that resolution on the device")

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float:
        """Estimated latency of `arch` in ms."""
        return float(self.estimate_batch([arch], scale=scale)[0])

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms, float64, one per arch (any resolution in the model's range)."""
        self._check(a.resolution for a in archs)
        return scale * self.factor * (self._sum.of_archs(archs) + self._overhead)

    def estimate_rows(self, genome: Genome, rows: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms of genome rows (what a search holds), float64."""
        self._check(genome.genes[int(genome.columns["resolution"][0])].choices)
        return scale * self.factor * (self._sum.of_rows(genome, rows) + self._overhead)

    def additive(self, scale: float = 1.0) -> Additive:
        """`estimate_rows` as `scale * factor * (block sum + call overhead)`, for the gradient search."""
        return Additive(self._sum, scale * self.factor, self._overhead)

    def fitted_on(self, arch: ArchConfig) -> bool:
        """Whether `arch` was one of the subnets the estimate was calibrated on (an op model: none)."""
        return bool(self._fitted) and arch_digest(arch) in self._fitted

    def serves(self, resolutions: Sequence[int]) -> tuple[int, ...]:
        """Those of `resolutions` inside the range it answers for."""
        lo, hi = self.resolution_range
        return tuple(r for r in resolutions if lo <= r <= hi)


# -- where models are ---------------------------------------------------------------------------------------------
def find_model_file(device: str, suffix: str, dirs: Iterable[Path] | None = None) -> Path | None:
    """`<device><suffix>` in the table folders (`ofakit.latency.table.table_dirs`), first match; None if none."""
    for folder in table_dirs() if dirs is None else dirs:
        path = Path(folder) / f"{device}{suffix}"
        if path.is_file():
            return path
    return None


def read_op_model(device: str, dirs: Iterable[Path] | None = None) -> OpModel:
    """The op model of `device` (canonical name) with the table it was fitted on; LatencyLookupError if none."""
    dirs = table_dirs() if dirs is None else list(dirs)
    path = find_model_file(device, SUFFIX, dirs)
    if path is None:
        raise LatencyLookupError(f"device {device!r} has no op model ({device}{SUFFIX} in "
                                 f"{', '.join(map(str, dirs)) or 'no table folder'}); fit one on its table: "
                                 f"{how_to_fit(device)}")
    model = OpModel.load(path)
    return model.with_table(find_table(device, model.meta.table.space, dirs))


def load_op_model(device: str, space: str) -> OpModelEstimator:
    """The op-model estimator of `device` (name or alias) for `space`.

    Raises LatencyLookupError when the device has no op model, or one that does not serve `space` (naming what it
    serves and what to measure).
    """
    from ofakit.latency.devices import get_device

    name = get_device(device).name
    model = read_op_model(name)
    if space not in model.meta.spaces:
        lo, hi = model.meta.resolution_range
        raise LatencyLookupError(
            f"the op model of device {name!r} serves spaces {', '.join(model.meta.spaces)} ({lo}-{hi} px), not "
            f"{space!r}: nothing of it was measured on the device; {how_to_profile(name, space)}")
    return OpModelEstimator(model, get_space(space), info=describe(model), table=model.table)


def describe(model: OpModel) -> dict[str, Any]:
    """What a report says about an op model: its table, served range, held-out error and attribution."""
    m = model.meta
    return {"kind": "op model from a table", "device": m.device, "file": model.path.name if model.path else None,
            "spaces": list(m.spaces), "table": m.table.file, "resolution_range": list(m.resolution_range),
            "held_out": m.held_out, "attribution": m.attribution, "license": m.license}

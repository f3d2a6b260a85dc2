"""Latency estimates from a look-up table: the sum of the subnet's layers, one arch or thousands at once.

estimate(arch) = sum over layers of (entry - call overhead) + call overhead, so that the per-call cost every
standalone-layer measurement includes is paid once, as in an end-to-end run (zero for MIT's tables). Entries are
read at the table's reference level (see `ofakit.latency.table`); `scale` multiplies the result, e.g. by
(reference measured now) / (reference in the table) to follow the machine's drift. A layer missing from the table
raises LatencyLookupError naming its key and the profile command; it never counts as zero.

For MBConv spaces `estimate_batch` and `estimate_rows` are vectorized (`ofakit.space.additive.BlockSum`): per
resolution the table becomes an array T[slot, kernel, expand] plus the fixed layers, and a batch is one gather and
one sum.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.latency.table import LatencyTable, layer_key
from ofakit.registry import Registry
from ofakit.space import LayerShape, SearchSpace, get_space
from ofakit.space.additive import Additive, BlockSum
from ofakit.space.genome import Genome
from ofakit.space.mbconv import MBConvSpace


class LutEstimator:
    """Sums table entries over the layers of a subnet.

    Args:
        table: the device's table for the space.
        space: the search space (defaults to the table's).
        per_round: scale each entry by the reference level of its profiling round (see LatencyTable.ms).
    """

    name = "lut"

    def __init__(self, table: LatencyTable, space: SearchSpace | None = None, *, per_round: bool = False) -> None:
        self.table = table
        self.space = space or get_space(table.meta["space"])
        self.per_round = per_round
        self._overhead = table.call_overhead_ms
        self._sum = BlockSum(self.space, self._net) if isinstance(self.space, MBConvSpace) else None

    def layer_ms(self, arch: ArchConfig) -> list[tuple[str, float]]:
        """(key, ms) for each layer of `arch`, in execution order; raises LatencyLookupError for a missing one."""
        return [(key, self.table.ms(arch.resolution, key, per_round=self.per_round))
                for key in map(layer_key, self.space.layers(arch))]

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float:
        """Estimated latency of `arch` in ms."""
        parts = self.layer_ms(arch)
        return scale * (sum(ms - self._overhead for _, ms in parts) + self._overhead)

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms, float64, one per arch (vectorized for MBConv spaces)."""
        if self._sum is None:
            return np.array([self.estimate(a, scale=scale) for a in archs], dtype=np.float64)
        return self._checked(self._sum.of_archs(archs), archs.__getitem__, scale)

    def estimate_rows(self, genome: Genome, rows: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms of genome rows (what a search holds), float64."""
        if self._sum is None:
            return self.estimate_batch(genome.decode(rows), scale=scale)
        return self._checked(self._sum.of_rows(genome, rows), lambda i: genome.decode(rows[i : i + 1])[0], scale)

    def additive(self, scale: float = 1.0) -> Additive | None:
        """`estimate_rows` as `scale * (block sum + call overhead)`, for compiled searches; None where the space has
        no block sum."""
        return None if self._sum is None else Additive(self._sum, scale, self._overhead)

    def _checked(self, sums: np.ndarray, arch_at: Callable[[int], ArchConfig], scale: float) -> np.ndarray:
        bad = np.flatnonzero(np.isnan(sums))
        if bad.size:
            self.estimate(arch_at(int(bad[0])))  # raises LatencyLookupError naming the missing key
        return scale * (sums + self._overhead)

    def _net(self, resolution: int, layer: LayerShape) -> float:
        """A layer's table entry net of the call overhead; NaN when missing (an error only if an arch needs it)."""
        key = layer_key(layer)
        entry = self.table.get(resolution, key)
        return np.nan if entry is None else self.table.ms(resolution, key, per_round=self.per_round) - self._overhead


class Estimator(Protocol):
    """What searches and commands need of a latency estimator: the LUT sum, or a learned predictor over it."""

    name: str
    table: LatencyTable

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float: ...

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray: ...

    def estimate_rows(self, genome: Genome, rows: np.ndarray, *, scale: float = 1.0) -> np.ndarray: ...

    def additive(self, scale: float = 1.0) -> Additive | None: ...


def _lut(device: str, space: str) -> Estimator:
    from ofakit.latency.table import find_table

    return LutEstimator(find_table(device, space))


def _predictor(device: str, space: str) -> Estimator:
    from ofakit.predict.latency import load_predictor

    return load_predictor(device, space)


def _auto(device: str, space: str) -> Estimator:
    from ofakit.predict.latency import load_predictor

    return load_predictor(device, space, fallback=True)


ESTIMATORS: Registry[Callable[[str, str], Estimator]] = Registry("latency model")
ESTIMATORS.add("lut", _lut)  # the sum of the table's layers
ESTIMATORS.add("predictor", _predictor)  # the learned predictor fitted for (device, space): ofakit latency fit
ESTIMATORS.add("auto", _auto)  # the predictor when one is fitted for (device, space), else the LUT sum


def estimator_for(device: str, space: str, *, model: str = "lut") -> Estimator:
    """The latency estimator of `device` (name or alias) for `space`: `model` is one of ESTIMATORS.

    Raises UnknownNameError for an unknown model, LatencyLookupError (naming the command that makes what is
    missing) when the device has no table for the space or, for "predictor", no fitted predictor.
    """
    return ESTIMATORS.get(model)(device, space)

"""Latency estimates from a look-up table: the sum of the subnet's layers, one arch or thousands at once.

estimate(arch) = sum over layers of (entry - call overhead) + call overhead, so that the per-call cost every
standalone-layer measurement includes is paid once, as in an end-to-end run (zero for MIT's tables). Entries are
read at the table's reference level (see `ofakit.latency.table`); `scale` multiplies the result, e.g. by
(reference measured now) / (reference in the table) to follow the machine's drift. A layer missing from the table
raises LatencyLookupError naming its key and the profile command; it never counts as zero.

Where the space has a block sum (MBConv spaces), `estimate_batch` and `estimate_rows` are vectorized
(`ofakit.space.additive.BlockSum`): per resolution the table becomes an array T[slot, kernel, expand] plus the fixed layers, and a batch is one gather and
one sum.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.latency.table import LatencyTable, layer_key
from ofakit.space import LayerShape, SearchSpace, get_space
from ofakit.space.additive import Additive
from ofakit.space.genome import Genome


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
        self._sum = self.space.block_sum(self._net)

    def layer_ms(self, arch: ArchConfig) -> list[tuple[str, float]]:
        """(key, ms) for each layer of `arch`, in execution order; raises LatencyLookupError for a missing one."""
        return [(key, self.table.ms(arch.resolution, key, per_round=self.per_round))
                for key in map(layer_key, self.space.layers(arch))]

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float:
        """Estimated latency of `arch` in ms."""
        parts = self.layer_ms(arch)
        return scale * (sum(ms - self._overhead for _, ms in parts) + self._overhead)

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms, float64, one per arch (vectorized where the space has a block sum)."""
        if self._sum is None:
            return np.array([self.estimate(a, scale=scale) for a in archs], dtype=np.float64)
        return self._checked(self._sum.of_archs(archs), archs.__getitem__, scale)

    def estimate_rows(self, genome: Genome, rows: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms of genome rows (what a search holds), float64."""
        if self._sum is None:
            return self.estimate_batch(genome.decode(rows), scale=scale)
        return self._checked(self._sum.of_rows(genome, rows), lambda i: genome.decode(rows[i : i + 1])[0], scale)

    def additive(self, scale: float = 1.0) -> Additive | None:
        """`estimate_rows` as `scale * (block sum + call overhead)`, for the gradient search; None where the space has
        no block sum."""
        return None if self._sum is None else Additive(self._sum, scale, self._overhead)

    def fitted_on(self, arch: ArchConfig) -> bool:
        """False: a table is measured layer by layer, never fitted on subnets."""
        return False

    def serves(self, resolutions: Sequence[int]) -> tuple[int, ...]:
        """Those of `resolutions` the table has a section for (a search proposes no other)."""
        return tuple(r for r in resolutions if r in self.table.entries)

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
    """What searches and commands need of a latency estimator of one (device, space): the LUT sum here, or a learned
    model (`ofakit.predict`), with or without a table behind it.

    `table` is the device's table (None for a model with no table), `estimate_rows` works on genome rows (what a
    search holds), `additive` gives the estimate as a sum over layers where it is one (None otherwise), and
    `fitted_on` says whether an arch was one the model was fitted on (never sampled to validate it), and `serves` which
    of some input resolutions it estimates (a search restricts itself to those).
    """

    name: str
    table: LatencyTable | None

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float: ...

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray: ...

    def estimate_rows(self, genome: Genome, rows: np.ndarray, *, scale: float = 1.0) -> np.ndarray: ...

    def additive(self, scale: float = 1.0) -> Additive | None: ...

    def fitted_on(self, arch: ArchConfig) -> bool: ...

    def serves(self, resolutions: Sequence[int]) -> tuple[int, ...]: ...

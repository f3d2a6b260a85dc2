"""A per-layer quantity (MACs, params, table latency) summed over the layers of MBConv subnets, whole batches at once.

A block's layer shape depends only on the resolution, its slot, its kernel and its expand ratio; depth only decides
which blocks run. So, per resolution, the sum over a subnet is `fixed` (stem, first block and head) plus, for every
active slot, `blocks[slot, kernel index, expand index]`: one gather and one sum for any number of archs, given as
`ArchConfig`s or as genome rows.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.space.base import LayerShape
from ofakit.space.genome import Genome
from ofakit.space.mbconv import MBConvSpace

PerLayer = Callable[[int, LayerShape], float]  # (resolution, layer) -> value; NaN where unknown


@dataclass
class _Tables:
    fixed: float  # stem, first block and head (NaN if one is unknown)
    blocks: np.ndarray  # [slot, kernel index, expand index]


@dataclass(frozen=True)
class Additive:
    """A cost that is `scale * (block_sum.of_rows(genome, rows) + offset)`, e.g. a LUT latency estimate: a sum over
    layers that a search can evaluate, or differentiate, from the block sum's arrays alone."""

    block_sum: BlockSum
    scale: float = 1.0
    offset: float = 0.0


class BlockSum:
    """Sums `per_layer` over the layers of subnets of `space`; NaN in the result where a layer's value is NaN.

    Args:
        space: an MBConv space.
        per_layer: the value of one layer at a resolution.
    """

    def __init__(self, space: MBConvSpace, per_layer: PerLayer) -> None:
        self.space = space
        self.per_layer = per_layer
        self._tables: dict[int, _Tables] = {}
        self._row_tables: tuple | None = None  # (resolutions, fixed per resolution, flat blocks) for `of_rows`
        self._slot_base = np.arange(space.num_slots)[None, :]
        sp = space
        self._stage_of = np.repeat(np.arange(len(sp.stage_slots)), [len(s) for s in sp.stage_slots])
        self._position = np.concatenate([np.arange(len(s)) for s in sp.stage_slots])

    def of_archs(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Float64, one value per arch (an arch of another space raises ArchError)."""
        sp, n = self.space, len(archs)
        k_index = {k: i for i, k in enumerate(sp.spec.kernel_choices)}
        e_index = {e: i for i, e in enumerate(sp.spec.expand_choices)}
        res = np.empty(n, dtype=np.int64)
        depths = np.empty((n, len(sp.stage_slots)), dtype=np.int64)
        ks = np.zeros((n, sp.num_slots), dtype=np.int64)
        es = np.zeros((n, sp.num_slots), dtype=np.int64)
        for i, a in enumerate(archs):
            if a.space != sp.name:
                sp.validate(a)  # raises ArchError naming both spaces
            res[i] = a.resolution
            depths[i] = a.depths
            ks[i] = [k_index.get(k, 0) for k in a.kernel_sizes]  # illegal values of skipped slots never count
            es[i] = [e_index.get(e, 0) for e in a.expand_ratios]
        return self.of_indices(res, depths, ks, es)

    def of_rows(self, genome: Genome, rows: np.ndarray) -> np.ndarray:
        """Float64, one value per genome row of this space.

        One gather over the blocks of all the genome's resolutions, a skipped slot pointing at a zero.
        """
        fixed, flat = self.row_tables(genome)
        n_k, n_e = len(self.space.spec.kernel_choices), len(self.space.spec.expand_choices)
        k_cols, e_cols = genome.columns["kernel_sizes"], genome.columns["expand_ratios"]
        res = rows[:, genome.columns["resolution"][0]]
        at = (res * (len(k_cols) * n_k * n_e))[:, None] + self._slot_base * (n_k * n_e) + rows[:, k_cols] * n_e \
            + rows[:, e_cols]
        used = genome.active(rows)[:, k_cols]  # a slot's expand gene is gated alike
        return fixed[res] + flat[np.where(used, at, len(flat) - 1)].sum(axis=1)

    def row_tables(self, genome: Genome) -> tuple[np.ndarray, np.ndarray]:
        """For rows of `genome`: `fixed` per resolution choice, and the blocks of every resolution choice flattened
        ([resolution, slot, kernel, expand], C order) with a zero appended, where skipped slots point."""
        resolutions = genome.genes[int(genome.columns["resolution"][0])].choices
        if self._row_tables is None or self._row_tables[0] != resolutions:
            tabs = [self.tables(int(r)) for r in resolutions]
            flat = np.concatenate([t.blocks.ravel() for t in tabs] + [np.zeros(1)])
            self._row_tables = (resolutions, np.array([t.fixed for t in tabs]), flat)
        return self._row_tables[1], self._row_tables[2]

    def complete(self, resolutions: Sequence[int]) -> bool:
        """Whether every block and fixed part is known (not NaN) at these resolutions."""
        return all(np.isfinite(self.tables(r).fixed) and np.isfinite(self.tables(r).blocks).all()
                   for r in resolutions)

    def of_indices(self, resolution: np.ndarray, depths: np.ndarray, kernel_index: np.ndarray,
                   expand_index: np.ndarray) -> np.ndarray:
        """Sums from resolutions [n], depths [n, stages] and kernel / expand choice indices [n, slots]."""
        active = self._position[None, :] < depths[:, self._stage_of]
        out = np.empty(len(resolution), dtype=np.float64)
        slots = np.arange(self.space.num_slots)[None, :]
        for r in np.unique(resolution):
            rows = np.flatnonzero(resolution == r)
            tab = self.tables(int(r))
            per_slot = tab.blocks[slots, kernel_index[rows], expand_index[rows]]
            out[rows] = tab.fixed + np.where(active[rows], per_slot, 0.0).sum(axis=1)
        return out

    def tables(self, resolution: int) -> _Tables:
        """The arrays of one resolution, built on first use from the full-depth uniform subnets."""
        if resolution in self._tables:
            return self._tables[resolution]
        sp, s = self.space, self.space.spec
        blocks = np.full((sp.num_slots, len(s.kernel_choices), len(s.expand_choices)), np.nan)
        fixed = np.nan
        first = 2  # stem and first block precede the slots in `layers`
        for ki, k in enumerate(s.kernel_choices):
            for ei, e in enumerate(s.expand_choices):
                layers = sp.layers(sp.full_depth(kernel=k, expand=e, resolution=resolution))
                blocks[:, ki, ei] = [self.per_layer(resolution, layer) for layer in layers[first:first + sp.num_slots]]
                if ki == ei == 0:  # the other layers are the same for every kernel and expand ratio
                    fixed = sum(self.per_layer(resolution, layer) for layer in layers[:first]) + sum(
                        self.per_layer(resolution, layer) for layer in layers[first + sp.num_slots:])
        self._tables[resolution] = _Tables(fixed, blocks)
        return self._tables[resolution]

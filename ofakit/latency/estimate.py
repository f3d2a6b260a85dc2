"""Latency estimates from a look-up table: the sum of the subnet's layers, one arch or thousands at once.

estimate(arch) = sum over layers of (entry - call overhead) + call overhead, so that the per-call cost every
standalone-layer measurement includes is paid once, as in an end-to-end run (zero for MIT's tables). Entries are
read at the table's reference level (see `ofakit.latency.table`); `scale` multiplies the result, e.g. by
(reference measured now) / (reference in the table) to follow the machine's drift. A layer missing from the table
raises LatencyLookupError naming its key and the profile command; it never counts as zero.

For MBConv spaces `estimate_batch` is vectorized: a block's latency depends only on (resolution, slot, kernel,
expand), so per resolution the table becomes an array T[slot, kernel, expand] plus the fixed layers (stem, first
block, head), and a batch is one gather and one sum.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.latency.layers import full_depth
from ofakit.latency.table import LatencyTable, layer_key
from ofakit.registry import Registry
from ofakit.space import SearchSpace, get_space
from ofakit.space.mbconv import MBConvSpace


@dataclass
class _Resolution:
    fixed: float  # stem, first block and head, NaN if one is missing
    blocks: np.ndarray  # [slot, kernel index, expand index] ms (net of the call overhead), NaN where missing


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
        self._per_resolution: dict[int, _Resolution] = {}

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
        if not isinstance(self.space, MBConvSpace):
            return np.array([self.estimate(a, scale=scale) for a in archs], dtype=np.float64)
        sp = self.space
        n, slots = len(archs), sp.num_slots
        k_index = {k: i for i, k in enumerate(sp.spec.kernel_choices)}
        e_index = {e: i for i, e in enumerate(sp.spec.expand_choices)}
        stage_of = np.repeat(np.arange(len(sp.stage_slots)), [len(s) for s in sp.stage_slots])
        position = np.concatenate([np.arange(len(s)) for s in sp.stage_slots])
        res = np.empty(n, dtype=np.int64)
        depths = np.empty((n, len(sp.stage_slots)), dtype=np.int64)
        ks = np.zeros((n, slots), dtype=np.int64)
        es = np.zeros((n, slots), dtype=np.int64)
        for i, a in enumerate(archs):
            if a.space != sp.name:
                sp.validate(a)  # raises ArchError naming both spaces
            res[i] = a.resolution
            depths[i] = a.depths
            ks[i] = [k_index.get(k, 0) for k in a.kernel_sizes]  # illegal values of skipped slots never count
            es[i] = [e_index.get(e, 0) for e in a.expand_ratios]
        active = position[None, :] < depths[:, stage_of]
        out = np.empty(n, dtype=np.float64)
        for r in np.unique(res):
            rows = np.flatnonzero(res == r)
            tab = self._resolution(int(r))
            per_slot = tab.blocks[np.arange(slots)[None, :], ks[rows], es[rows]]
            out[rows] = tab.fixed + np.where(active[rows], per_slot, 0.0).sum(axis=1)
        bad = np.flatnonzero(np.isnan(out))
        if bad.size:
            self.estimate(archs[int(bad[0])])  # raises LatencyLookupError naming the missing key
        return scale * (out + self._overhead)

    def _resolution(self, resolution: int) -> _Resolution:
        """Arrays of one resolution, built on first use; missing entries are NaN until an arch needs them."""
        if resolution in self._per_resolution:
            return self._per_resolution[resolution]
        sp = self.space
        assert isinstance(sp, MBConvSpace)
        s = sp.spec
        blocks = np.full((sp.num_slots, len(s.kernel_choices), len(s.expand_choices)), np.nan)
        fixed = np.nan
        first = 2  # stem and first block precede the slots in `layers`
        for ki, k in enumerate(s.kernel_choices):
            for ei, e in enumerate(s.expand_choices):
                layers = sp.layers(full_depth(sp, kernel=k, expand=e, resolution=resolution))
                ms = [self._net(resolution, layer_key(layer)) for layer in layers]
                blocks[:, ki, ei] = ms[first:first + sp.num_slots]
                fixed = sum(ms[:first]) + sum(ms[first + sp.num_slots:])
        tab = _Resolution(fixed, blocks)
        self._per_resolution[resolution] = tab
        return tab

    def _net(self, resolution: int, key: str) -> float:
        entry = self.table.get(resolution, key)
        return np.nan if entry is None else self.table.ms(resolution, key, per_round=self.per_round) - self._overhead


class Estimator(Protocol):
    """What searches and commands need of a latency estimator: the LUT sum, or a learned predictor over it."""

    name: str
    table: LatencyTable

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float: ...

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray: ...


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

"""Which layers a space is made of: every distinct `LayerShape` at a resolution, and the reference model.

The space names subnets that together hold every layer shape at a resolution (`SearchSpace.covering_archs`; for an
MBConv space, the full-depth subnets with one kernel and one expand ratio everywhere); a space without that
capability cannot be profiled layer by layer, and the error says so. Torch-free: profiling plans, the estimator and
the converters use it.
"""
from __future__ import annotations

from collections.abc import Iterable

from ofakit.arch import ArchConfig
from ofakit.space import LayerShape, SearchSpace


def distinct_layers(space: SearchSpace, resolution: int) -> list[LayerShape]:
    """Every distinct layer of the space at `resolution`, in network order (stem first, classifier last)."""
    seen: dict[LayerShape, None] = {}
    per_arch = [space.layers(a) for a in space.covering_archs(resolution)]
    # walk position by position so the list reads like a network: all stems, all first blocks, ... all heads
    for position in range(max(len(layers) for layers in per_arch)):
        for layers in per_arch:
            if position < len(layers):
                seen.setdefault(layers[position], None)
    return list(seen)


def plan(space: SearchSpace, resolutions: Iterable[int]) -> dict[int, list[LayerShape]]:
    """Resolution -> its distinct layers: what a full table of the space at those resolutions holds."""
    return {r: distinct_layers(space, r) for r in resolutions}


def reference_arch(space: SearchSpace) -> ArchConfig:
    """The fixed model a table times in every round to measure drift (`SearchSpace.reference_arch`)."""
    return space.reference_arch()

"""Which layers a space is made of: every distinct `LayerShape` at a resolution, and the reference model.

A block's shape depends only on its slot (stage, first or later), its own kernel and expand ratio, and the
resolution; depth only decides which blocks run. So the subnets with one kernel and one expand ratio everywhere, at
full depth, hold every block shape of the space at a resolution, and with them the stem, first block and head.
Torch-free: profiling plans, the estimator and the converters use it.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.space import LayerShape, SearchSpace
from ofakit.space.mbconv import MBConvSpace


def mbconv_space(space: SearchSpace, what: str = "profiling") -> MBConvSpace:
    """`space` if it is an MBConv space, else a ConfigError (layer enumeration is written for MBConv spaces)."""
    if not isinstance(space, MBConvSpace):
        raise ConfigError(f"{what} enumerates layers of MBConv spaces only; space {space.name!r} is a "
                          f"{space.family} space (supported: ofa-mbv3-*, ofa-proxyless-*, proxyless-mobile, tiny)")
    return space


def covering_archs(space: MBConvSpace, resolution: int) -> list[ArchConfig]:
    """Subnets that together hold every layer shape of the space at `resolution`."""
    s = space.spec
    return [space.full_depth(kernel=k, expand=e, resolution=resolution)
            for k, e in itertools.product(s.kernel_choices, s.expand_choices)]


def distinct_layers(space: SearchSpace, resolution: int) -> list[LayerShape]:
    """Every distinct layer of the space at `resolution`, in network order (stem first, classifier last)."""
    seen: dict[LayerShape, None] = {}
    archs = covering_archs(mbconv_space(space), resolution)
    per_arch = [space.layers(a) for a in archs]
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
    """The fixed model a table times in every round to measure drift: the middle kernel, expand ratio, depth and
    resolution of the space (MBConv spaces), else the smallest subnet."""
    if not isinstance(space, MBConvSpace):
        return space.smallest()
    s = space.spec

    def mid(values: Iterable) -> object:
        values = sorted(values)
        return values[len(values) // 2]

    return space.uniform(kernel=mid(s.kernel_choices), expand=mid(s.expand_choices),
                         depth=mid(s.depth_choices), resolution=mid(space.resolutions))

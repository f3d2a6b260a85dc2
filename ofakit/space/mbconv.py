"""Inverted-residual (MBConv) search spaces: the OFA MobileNetV3 and ProxylessNAS families, CIFAR and tiny variants.

A network is a stem conv, a fixed first block (kernel 3, expand 1), elastic stages of up to `max_depth` blocks, and a
head. Each block slot has a kernel size and an expand ratio; each stage runs its first `depth` blocks
(Cai et al., "Once-for-All", ICLR 2020; Howard et al., "Searching for MobileNetV3", ICCV 2019;
Cai et al., "ProxylessNAS", ICLR 2019).
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError
from ofakit.space.base import Gene, LayerShape, SearchSpace, make_divisible

SE_REDUCTION = 4
CHANNEL_DIVISOR = 8


def se_channels(channels: int) -> int:
    """Hidden width of the squeeze-and-excitation block on `channels` channels."""
    return make_divisible(channels // SE_REDUCTION, CHANNEL_DIVISOR)


def mid_channels(in_channels: int, expand: float) -> int:
    """Expanded width of an inverted-residual block."""
    return make_divisible(round(in_channels * expand), CHANNEL_DIVISOR)


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: its output width, the stride of its first block, activation, SE, and block slots."""

    width: int
    stride: int
    act: str  # "relu", "relu6" or "hswish"
    se: bool
    max_depth: int


@dataclass(frozen=True)
class MBConvSpec:
    """Everything that fixes an MBConv search space; the elastic choices are the last fields."""

    name: str
    stem_width: int
    stem_stride: int
    stem_act: str
    first_width: int  # the fixed first block: kernel 3, expand 1, stride 1
    first_act: str
    first_se: bool
    stages: tuple[StageSpec, ...]
    head: str  # "mbv3": 1x1 conv+BN, pool, 1x1 conv (no BN), linear; "proxyless": 1x1 conv+BN, pool, linear
    final_expand_width: int  # mbv3 head only; 0 for the proxyless head
    last_width: int
    head_act: str
    kernel_choices: tuple[int, ...]
    expand_choices: tuple[int, ...]
    depth_choices: tuple[int, ...]
    resolutions: tuple[int, ...]
    num_classes: int = 1000
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1


class MBConvSpace(SearchSpace):
    """A search space of MobileNet-style networks with elastic kernel, expand ratio, depth and resolution."""

    family = "mbconv"

    def __init__(self, spec: MBConvSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.resolutions = tuple(spec.resolutions)
        self.num_classes = spec.num_classes
        self.stage_depths: tuple[tuple[int, ...], ...] = tuple(
            tuple(d for d in spec.depth_choices if d <= st.max_depth) or (st.max_depth,) for st in spec.stages
        )
        self.stage_slots: tuple[range, ...] = ()
        start = 0
        for st in spec.stages:
            self.stage_slots += (range(start, start + st.max_depth),)
            start += st.max_depth
        self.num_slots = start
        k, e, r = len(spec.kernel_choices), len(spec.expand_choices), len(self.resolutions)
        self._slot_width = k + e
        self._feature_names = [
            f"block{s}/{field}={v}"
            for s in range(self.num_slots)
            for field, values in (("kernel", spec.kernel_choices), ("expand", spec.expand_choices))
            for v in values
        ] + [f"resolution={v}" for v in self.resolutions]
        self._num_features = self.num_slots * (k + e) + r

    # -- choices --------------------------------------------------------------------------------------------
    def choices(self) -> dict[str, Any]:
        return {
            "resolution": list(self.resolutions),
            "depth": list(self.spec.depth_choices),
            "depth_per_stage": [list(ds) for ds in self.stage_depths],
            "kernel_size": list(self.spec.kernel_choices),
            "expand_ratio": list(self.spec.expand_choices),
            "block_slots": self.num_slots,
        }

    def num_architectures(self) -> int:
        per_block = len(self.spec.kernel_choices) * len(self.spec.expand_choices)
        total = len(self.resolutions)
        for depths in self.stage_depths:
            total *= sum(per_block**d for d in depths)
        return total

    def _make(self, resolution: int, depths: Sequence[int], kernels: Sequence[int], expands: Sequence[float]) -> ArchConfig:
        return ArchConfig(self.name, resolution, tuple(depths), tuple(kernels), tuple(expands))

    def sample(self, rng: random.Random) -> ArchConfig:
        s = self.spec
        return self._make(
            rng.choice(self.resolutions),
            [rng.choice(ds) for ds in self.stage_depths],
            [rng.choice(s.kernel_choices) for _ in range(self.num_slots)],
            [rng.choice(s.expand_choices) for _ in range(self.num_slots)],
        )

    def largest(self) -> ArchConfig:
        s = self.spec
        return self._make(max(self.resolutions), [max(ds) for ds in self.stage_depths],
                          [max(s.kernel_choices)] * self.num_slots, [max(s.expand_choices)] * self.num_slots)

    def smallest(self) -> ArchConfig:
        s = self.spec
        return self._make(min(self.resolutions), [min(ds) for ds in self.stage_depths],
                          [min(s.kernel_choices)] * self.num_slots, [min(s.expand_choices)] * self.num_slots)

    def uniform(self, *, resolution: int, depth: int, kernel: int, expand: float) -> ArchConfig:
        """Every block with the same kernel and expand ratio, every stage at `depth` (see `depth_at_most`)."""
        depths = [self.depth_at_most(depth, ds) for ds in self.stage_depths]
        arch = self._make(resolution, depths, [kernel] * self.num_slots, [expand] * self.num_slots)
        self.validate(arch)
        return arch

    def uniform_grid(self, resolutions: Sequence[int] = ()) -> list[ArchConfig]:
        s = self.spec
        return list(dict.fromkeys(self.uniform(kernel=k, expand=e, depth=d, resolution=r)
                                  for r in resolutions or self.resolutions for d in s.depth_choices
                                  for k in s.kernel_choices for e in s.expand_choices))

    def restricted_sample(self, rng: random.Random, *, resolution: int,
                          opened: Mapping[str, Sequence[Any]]) -> ArchConfig:
        s = self.spec
        kernels = tuple(opened.get("kernel_sizes", s.kernel_choices))
        expands = tuple(opened.get("expand_ratios", s.expand_choices))
        depth_open = tuple(opened.get("depths", s.depth_choices))
        depths = [rng.choice([d for d in ds if d in depth_open] or [max(ds)]) for ds in self.stage_depths]
        return ArchConfig(self.name, resolution, tuple(depths), tuple(rng.choice(kernels) for _ in range(self.num_slots)),
                          tuple(rng.choice(expands) for _ in range(self.num_slots)))

    def block_sum(self, per_layer: Callable[[int, LayerShape], float]) -> Any:
        from ofakit.space.additive import BlockSum  # additive.py builds on this module

        return BlockSum(self, per_layer)

    def covering_archs(self, resolution: int) -> list[ArchConfig]:
        """A block's shape depends only on its slot, kernel, expand ratio and the resolution (depth only decides
        which blocks run), so the full-depth subnets with one kernel and one expand ratio everywhere hold every block
        shape, and with them the stem, first block and head."""
        s = self.spec
        return [self.full_depth(kernel=k, expand=e, resolution=resolution)
                for k in s.kernel_choices for e in s.expand_choices]

    def reference_arch(self) -> ArchConfig:
        """The middle kernel, expand ratio, depth and resolution of the space."""
        s = self.spec

        def mid(values: Sequence[Any]) -> Any:
            return sorted(values)[len(values) // 2]

        return self.uniform(kernel=mid(s.kernel_choices), expand=mid(s.expand_choices), depth=mid(s.depth_choices),
                            resolution=mid(self.resolutions))

    def full_depth(self, *, kernel: int, expand: float, resolution: int) -> ArchConfig:
        """Every slot active, with one kernel and expand ratio (any resolution, not checked against the range)."""
        return ArchConfig(self.name, resolution, tuple(max(ds) for ds in self.stage_depths),
                          (kernel,) * self.num_slots, (expand,) * self.num_slots)

    def genes(self) -> tuple[Gene, ...]:
        s = self.spec
        out = [Gene("resolution", 0, self.resolutions)]
        out += [Gene("depths", i, ds) for i, ds in enumerate(self.stage_depths)]
        for field, choices in (("kernel_sizes", s.kernel_choices), ("expand_ratios", s.expand_choices)):
            out += [Gene(field, slot, choices, gate=1 + stage, threshold=position)
                    for stage, slots in enumerate(self.stage_slots) for position, slot in enumerate(slots)]
        return tuple(out)

    def mutate(self, arch: ArchConfig, rng: random.Random, prob: float = 0.1) -> ArchConfig:
        s = self.spec
        res = rng.choice(self.resolutions) if rng.random() < prob else arch.resolution
        depths = [rng.choice(ds) if rng.random() < prob else d for d, ds in zip(arch.depths, self.stage_depths)]
        kernels = [rng.choice(s.kernel_choices) if rng.random() < prob else k for k in arch.kernel_sizes]
        expands = [rng.choice(s.expand_choices) if rng.random() < prob else e for e in arch.expand_ratios]
        return self._make(res, depths, kernels, expands)

    def crossover(self, a: ArchConfig, b: ArchConfig, rng: random.Random) -> ArchConfig:
        def pick(x: Sequence[Any], y: Sequence[Any]) -> list[Any]:
            return [u if rng.random() < 0.5 else v for u, v in zip(x, y)]

        return self._make(
            a.resolution if rng.random() < 0.5 else b.resolution,
            pick(a.depths, b.depths), pick(a.kernel_sizes, b.kernel_sizes), pick(a.expand_ratios, b.expand_ratios),
        )

    # -- checks ---------------------------------------------------------------------------------------------
    def _validate_fields(self, arch: ArchConfig) -> None:
        s = self.spec
        self._check_length(arch, "depths", len(s.stages))
        self._check_length(arch, "kernel_sizes", self.num_slots)
        self._check_length(arch, "expand_ratios", self.num_slots)
        if arch.width_mults:
            raise ArchError(f"space {self.name!r} has no elastic width; remove 'width_mults'")
        for i, (d, ds) in enumerate(zip(arch.depths, self.stage_depths)):
            self._check_choice(d, ds, "depth", f"stage {i}", self.name)
        for slot in self.active_slots(arch):
            self._check_choice(arch.kernel_sizes[slot], s.kernel_choices, "kernel size", f"block {slot}", self.name)
            self._check_choice(arch.expand_ratios[slot], s.expand_choices, "expand ratio", f"block {slot}", self.name)

    def active_slots(self, arch: ArchConfig) -> list[int]:
        """Indices of the block slots that the arch's depths keep."""
        return [slot for slots, d in zip(self.stage_slots, arch.depths) for slot in slots[:d]]

    def active_key(self, arch: ArchConfig) -> tuple:
        slots = self.active_slots(arch)
        return (arch.resolution, arch.depths,
                tuple(arch.kernel_sizes[i] for i in slots if i < len(arch.kernel_sizes)),
                tuple(arch.expand_ratios[i] for i in slots if i < len(arch.expand_ratios)))

    # -- features -------------------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return list(self._feature_names)

    def encode(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        s = self.spec
        k_index = {k: i for i, k in enumerate(s.kernel_choices)}
        e_index = {e: len(s.kernel_choices) + i for i, e in enumerate(s.expand_choices)}
        r_index = {r: i for i, r in enumerate(self.resolutions)}
        rows: list[int] = []
        cols: list[int] = []
        for n, arch in enumerate(archs):
            for slot in self.active_slots(arch):
                base = slot * self._slot_width
                rows += (n, n)
                cols += (base + k_index[arch.kernel_sizes[slot]], base + e_index[arch.expand_ratios[slot]])
            if arch.resolution in r_index:  # off-range resolutions encode as all-zero
                rows.append(n)
                cols.append(self.num_slots * self._slot_width + r_index[arch.resolution])
        out = np.zeros((len(archs), self._num_features), dtype=np.float32)
        out[rows, cols] = 1.0
        return out

    # -- shapes, MACs, params -------------------------------------------------------------------------------
    def layers(self, arch: ArchConfig) -> list[LayerShape]:
        s = self.spec
        h = arch.resolution
        h1 = math.ceil(h / s.stem_stride)
        out = [LayerShape("stem", (h, h, 3), (h1, h1, s.stem_width), kernel=3, stride=s.stem_stride, act=s.stem_act)]
        out.append(LayerShape("mbconv", (h1, h1, s.stem_width), (h1, h1, s.first_width), kernel=3, stride=1,
                              mid=s.stem_width, se=s.first_se, act=s.first_act,
                              skip=s.stem_width == s.first_width))
        h, c = h1, s.first_width
        for stage, slots, depth in zip(s.stages, self.stage_slots, arch.depths):
            for i, slot in enumerate(slots[:depth]):
                stride = stage.stride if i == 0 else 1
                ho = math.ceil(h / stride)
                out.append(LayerShape(
                    "mbconv", (h, h, c), (ho, ho, stage.width), kernel=arch.kernel_sizes[slot], stride=stride,
                    mid=mid_channels(c, arch.expand_ratios[slot]), se=stage.se, act=stage.act,
                    skip=stride == 1 and c == stage.width,
                ))
                h, c = ho, stage.width
        if s.head == "mbv3":
            out.append(LayerShape("final_expand", (h, h, c), (h, h, s.final_expand_width), kernel=1, act=s.head_act))
            out.append(LayerShape("pool", (h, h, s.final_expand_width), (1, 1, s.final_expand_width)))
            out.append(LayerShape("feature_mix", (1, 1, s.final_expand_width), (1, 1, s.last_width), kernel=1,
                                  act=s.head_act))
        else:
            out.append(LayerShape("feature_mix", (h, h, c), (h, h, s.last_width), kernel=1, act=s.head_act))
            out.append(LayerShape("pool", (h, h, s.last_width), (1, 1, s.last_width)))
        out.append(LayerShape("classifier", (1, 1, s.last_width), (1, 1, s.num_classes)))
        return out

    def layer_costs(self, layer: LayerShape) -> tuple[int, int]:
        """(MACs, params) of one layer of this space."""
        (hi, wi, ci), (ho, wo, co) = layer.input, layer.output
        if layer.op == "stem":
            return ho * wo * ci * co * layer.kernel**2, ci * co * layer.kernel**2 + 2 * co
        if layer.op == "mbconv":
            mid = layer.mid
            macs = ho * wo * mid * layer.kernel**2 + ho * wo * mid * co
            params = mid * layer.kernel**2 + 2 * mid + mid * co + 2 * co
            if mid != ci:  # expand 1x1 conv (absent in the first block)
                macs += hi * wi * ci * mid
                params += ci * mid + 2 * mid
            if layer.se:
                sm = se_channels(mid)
                macs += 2 * mid * sm
                params += 2 * mid * sm + sm + mid
            return macs, params
        if layer.op in ("final_expand", "feature_mix"):
            bn = layer.op == "final_expand" or self.spec.head != "mbv3"
            return ho * wo * ci * co, ci * co + (2 * co if bn else 0)
        if layer.op == "classifier":
            return ci * co, ci * co + co
        return 0, 0

    def _costs(self, arch: ArchConfig) -> tuple[int, int]:
        costs = [self.layer_costs(layer) for layer in self.layers(arch)]
        return sum(c[0] for c in costs), sum(c[1] for c in costs)

    def macs(self, arch: ArchConfig) -> int:
        return self._costs(arch)[0]

    def params(self, arch: ArchConfig) -> int:
        return self._costs(arch)[1]

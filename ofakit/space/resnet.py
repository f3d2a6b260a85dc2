"""The OFA ResNet-50 search space: elastic depth (0/1/2 extra blocks per stage), expand ratio (0.2/0.25/0.35) and
width multiplier (0.65/0.8/1.0), with MIT once-for-all's widths (He et al., CVPR 2016; Cai et al., ICLR 2020).

Width multipliers come in six groups: the stem's middle conv, the stem's output, then one per stage. The stem has a
residual 3x3 conv that a stem depth of 2 keeps and any smaller value skips, as in MIT's implementation.
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError
from ofakit.space.base import Gene, LayerShape, SearchSpace, make_divisible
from ofakit.space.registry import SPACES


@dataclass(frozen=True)
class ResNetSpec:
    name: str
    base_depths: tuple[int, ...] = (2, 2, 4, 2)
    stage_widths: tuple[int, ...] = (256, 512, 1024, 2048)
    stage_strides: tuple[int, ...] = (1, 2, 2, 2)
    stem_width: int = 64
    depth_choices: tuple[int, ...] = (0, 1, 2)
    expand_choices: tuple[float, ...] = (0.2, 0.25, 0.35)
    width_choices: tuple[float, ...] = (0.65, 0.8, 1.0)
    resolutions: tuple[int, ...] = tuple(range(128, 225, 4))
    num_classes: int = 1000
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1


class ResNetSpace(SearchSpace):
    """Bottleneck ResNets with elastic depth, expand ratio and width."""

    family = "resnet"

    def __init__(self, spec: ResNetSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.resolutions = tuple(spec.resolutions)
        self.num_classes = spec.num_classes
        d_max = max(spec.depth_choices)
        self.stage_slots: tuple[range, ...] = ()
        start = 0
        for base in spec.base_depths:
            self.stage_slots += (range(start, start + base + d_max),)
            start += base + d_max
        self.num_slots = start
        self.num_width_groups = 2 + len(spec.base_depths)
        # channel widths per width choice
        self.stem_out = {w: make_divisible(spec.stem_width * w, 8) for w in spec.width_choices}
        self.stem_mid = {w: make_divisible(c // 2, 8) for w, c in self.stem_out.items()}
        self.stage_out = [{w: make_divisible(base * w, 8) for w in spec.width_choices} for base in spec.stage_widths]
        self.stem_depths = (min(spec.depth_choices), d_max)  # all smaller values skip the stem block alike
        self._groups = (
            [("depth", i, spec.depth_choices) for i in range(1 + len(spec.base_depths))]
            + [("expand", s, spec.expand_choices) for s in range(self.num_slots)]
            + [("width", g, spec.width_choices) for g in range(self.num_width_groups)]
            + [("resolution", 0, self.resolutions)]
        )
        self._offsets: list[int] = []
        total = 0
        for _, _, values in self._groups:
            self._offsets.append(total)
            total += len(values)
        self._num_features = total

    # -- choices --------------------------------------------------------------------------------------------
    def choices(self) -> dict[str, Any]:
        s = self.spec
        return {"resolution": list(self.resolutions), "stem_depth": list(self.stem_depths),
                "depth": list(s.depth_choices), "expand_ratio": list(s.expand_choices),
                "width_mult": list(s.width_choices), "block_slots": self.num_slots,
                "width_groups": self.num_width_groups}

    def num_architectures(self) -> int:
        s = self.spec
        e = len(s.expand_choices)
        total = len(self.resolutions) * len(self.stem_depths) * len(s.width_choices) ** self.num_width_groups
        for base in s.base_depths:
            total *= sum(e ** (base + d) for d in s.depth_choices)
        return total

    def _make(self, resolution: int, depths: Sequence[int], expands: Sequence[float],
              widths: Sequence[float]) -> ArchConfig:
        return ArchConfig(self.name, resolution, tuple(depths), expand_ratios=tuple(expands),
                          width_mults=tuple(widths))

    def sample(self, rng: random.Random) -> ArchConfig:
        s = self.spec
        return self._make(
            rng.choice(self.resolutions),
            [rng.choice(self.stem_depths)] + [rng.choice(s.depth_choices) for _ in s.base_depths],
            [rng.choice(s.expand_choices) for _ in range(self.num_slots)],
            [rng.choice(s.width_choices) for _ in range(self.num_width_groups)],
        )

    def _extreme(self, pick: Any) -> ArchConfig:
        s = self.spec
        return self._make(pick(self.resolutions), [pick(s.depth_choices)] * (1 + len(s.base_depths)),
                          [pick(s.expand_choices)] * self.num_slots, [pick(s.width_choices)] * self.num_width_groups)

    def largest(self) -> ArchConfig:
        return self._extreme(max)

    def smallest(self) -> ArchConfig:
        return self._extreme(min)

    def uniform(self, *, resolution: int, depth: int, expand: float, width: float) -> ArchConfig:
        """One expand ratio and width everywhere; the stem block and every stage at `depth` (see `depth_at_most`)."""
        stages = (self.stem_depths, *([self.spec.depth_choices] * len(self.spec.base_depths)))
        arch = self._make(resolution, [self.depth_at_most(depth, ds) for ds in stages], [expand] * self.num_slots,
                          [width] * self.num_width_groups)
        self.validate(arch)
        return arch

    def uniform_grid(self, resolutions: Sequence[int] = ()) -> list[ArchConfig]:
        s = self.spec
        return list(dict.fromkeys(self.uniform(resolution=r, depth=d, expand=e, width=w)
                                  for r in resolutions or self.resolutions for d in s.depth_choices
                                  for e in s.expand_choices for w in s.width_choices))

    def restricted_sample(self, rng: random.Random, *, resolution: int,
                          opened: Mapping[str, Sequence[Any]]) -> ArchConfig:
        s = self.spec
        expands = tuple(opened.get("expand_ratios", s.expand_choices))
        depth_open = tuple(opened.get("depths", s.depth_choices))
        widths = tuple(opened.get("width_mults", s.width_choices))
        stem = [d for d in self.stem_depths if d in depth_open] or [max(self.stem_depths)]
        return self._make(resolution, (rng.choice(stem), *(rng.choice(depth_open) for _ in s.base_depths)),
                          [rng.choice(expands) for _ in range(self.num_slots)],
                          [rng.choice(widths) for _ in range(self.num_width_groups)])

    def genes(self) -> tuple[Gene, ...]:
        s = self.spec
        out = [Gene("resolution", 0, self.resolutions), Gene("depths", 0, self.stem_depths)]
        out += [Gene("depths", 1 + i, s.depth_choices) for i in range(len(s.base_depths))]
        out += [Gene("expand_ratios", slot, s.expand_choices, gate=2 + stage, threshold=position - base)
                for stage, (slots, base) in enumerate(zip(self.stage_slots, s.base_depths))
                for position, slot in enumerate(slots)]
        out += [Gene("width_mults", g, s.width_choices) for g in range(self.num_width_groups)]
        return tuple(out)

    def mutate(self, arch: ArchConfig, rng: random.Random, prob: float = 0.1) -> ArchConfig:
        s = self.spec

        def redraw(values: Sequence[Any], choices: Sequence[Any]) -> list[Any]:
            return [rng.choice(choices) if rng.random() < prob else v for v in values]

        res = rng.choice(self.resolutions) if rng.random() < prob else arch.resolution
        depths = redraw(arch.depths[:1], self.stem_depths) + redraw(arch.depths[1:], s.depth_choices)
        return self._make(res, depths, redraw(arch.expand_ratios, s.expand_choices),
                          redraw(arch.width_mults, s.width_choices))

    def crossover(self, a: ArchConfig, b: ArchConfig, rng: random.Random) -> ArchConfig:
        def pick(x: Sequence[Any], y: Sequence[Any]) -> list[Any]:
            return [u if rng.random() < 0.5 else v for u, v in zip(x, y)]

        return self._make(a.resolution if rng.random() < 0.5 else b.resolution, pick(a.depths, b.depths),
                          pick(a.expand_ratios, b.expand_ratios), pick(a.width_mults, b.width_mults))

    # -- checks ---------------------------------------------------------------------------------------------
    def _validate_fields(self, arch: ArchConfig) -> None:
        s = self.spec
        self._check_length(arch, "depths", 1 + len(s.base_depths))
        self._check_length(arch, "expand_ratios", self.num_slots)
        self._check_length(arch, "width_mults", self.num_width_groups)
        if arch.kernel_sizes:
            raise ArchError(f"space {self.name!r} has no elastic kernel; remove 'kernel_sizes'")
        for i, d in enumerate(arch.depths):
            self._check_choice(d, s.depth_choices, "depth", "the stem" if i == 0 else f"stage {i - 1}", self.name)
        for slot in self.active_slots(arch):
            self._check_choice(arch.expand_ratios[slot], s.expand_choices, "expand ratio", f"block {slot}", self.name)
        for g, w in enumerate(arch.width_mults):
            self._check_choice(w, s.width_choices, "width multiplier", f"width group {g}", self.name)

    def keeps_stem_block(self, arch: ArchConfig) -> bool:
        return bool(arch.depths) and arch.depths[0] >= max(self.spec.depth_choices)

    def active_slots(self, arch: ArchConfig) -> list[int]:
        return [slot for slots, base, d in zip(self.stage_slots, self.spec.base_depths, arch.depths[1:])
                for slot in slots[: base + d]]

    def active_key(self, arch: ArchConfig) -> tuple:
        return (arch.resolution, self.keeps_stem_block(arch), arch.depths[1:],
                tuple(arch.expand_ratios[i] for i in self.active_slots(arch) if i < len(arch.expand_ratios)),
                arch.width_mults)

    # -- features -------------------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f"{kind}{i}={v}" for kind, i, values in self._groups for v in values]

    def encode(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        s = self.spec
        n_stem = 1 + len(s.base_depths)
        e_off = self._offsets[n_stem]
        w_off = self._offsets[n_stem + self.num_slots]
        r_off = self._offsets[-1]
        rows: list[int] = []
        cols: list[int] = []
        for n, arch in enumerate(archs):
            depths = (max(self.stem_depths) if self.keeps_stem_block(arch) else min(self.stem_depths),
                      *arch.depths[1:])
            for i, d in enumerate(depths):
                rows.append(n)
                cols.append(self._offsets[i] + s.depth_choices.index(d))
            for slot in self.active_slots(arch):
                rows.append(n)
                cols.append(e_off + slot * len(s.expand_choices) + s.expand_choices.index(arch.expand_ratios[slot]))
            for g, w in enumerate(arch.width_mults):
                rows.append(n)
                cols.append(w_off + g * len(s.width_choices) + s.width_choices.index(w))
            if arch.resolution in self.resolutions:
                rows.append(n)
                cols.append(r_off + self.resolutions.index(arch.resolution))
        out = np.zeros((len(archs), self._num_features), dtype=np.float32)
        out[rows, cols] = 1.0
        return out

    # -- shapes, MACs, params -------------------------------------------------------------------------------
    def layers(self, arch: ArchConfig) -> list[LayerShape]:
        s = self.spec
        h = arch.resolution
        h1 = math.ceil(h / 2)
        mid, c = self.stem_mid[arch.width_mults[0]], self.stem_out[arch.width_mults[1]]
        out = [LayerShape("stem", (h, h, 3), (h1, h1, mid), kernel=3, stride=2, act="relu")]
        if self.keeps_stem_block(arch):
            out.append(LayerShape("stem", (h1, h1, mid), (h1, h1, mid), kernel=3, stride=1, act="relu", skip=True))
        out.append(LayerShape("stem", (h1, h1, mid), (h1, h1, c), kernel=3, stride=1, act="relu"))
        h = math.ceil(h1 / 2)
        out.append(LayerShape("maxpool", (h1, h1, c), (h, h, c), kernel=3, stride=2))
        for i, (slots, base, d) in enumerate(zip(self.stage_slots, s.base_depths, arch.depths[1:])):
            width = self.stage_out[i][arch.width_mults[2 + i]]
            for j, slot in enumerate(slots[: base + d]):
                stride = s.stage_strides[i] if j == 0 else 1
                ho = math.ceil(h / stride)
                out.append(LayerShape("bottleneck", (h, h, c), (ho, ho, width), kernel=3, stride=stride,
                                      mid=make_divisible(round(width * arch.expand_ratios[slot]), 8), act="relu",
                                      skip=j > 0))
                h, c = ho, width
        out.append(LayerShape("pool", (h, h, c), (1, 1, c)))
        out.append(LayerShape("classifier", (1, 1, c), (1, 1, s.num_classes)))
        return out

    def _costs(self, arch: ArchConfig) -> tuple[int, int]:
        macs = params = 0
        for layer in self.layers(arch):
            (hi, wi, ci), (ho, wo, co) = layer.input, layer.output
            if layer.op == "stem":
                macs += ho * wo * ci * co * 9
                params += ci * co * 9 + 2 * co
            elif layer.op == "bottleneck":
                m = layer.mid
                macs += hi * wi * ci * m + ho * wo * m * m * 9 + ho * wo * m * co
                params += ci * m + 9 * m * m + m * co + 4 * m + 2 * co
                if not layer.skip:
                    macs += ho * wo * ci * co
                    params += ci * co + 2 * co
            elif layer.op == "classifier":
                macs += ci * co
                params += ci * co + co
        return macs, params

    def macs(self, arch: ArchConfig) -> int:
        return self._costs(arch)[0]

    def params(self, arch: ArchConfig) -> int:
        return self._costs(arch)[1]


@SPACES.register("ofa-resnet50")
def ofa_resnet50() -> ResNetSpace:
    """MIT's OFA ResNet-50 space: depth 0/1/2, expand 0.2/0.25/0.35, width 0.65/0.8/1.0, resolutions 128-224."""
    return ResNetSpace(ResNetSpec(name="ofa-resnet50"))

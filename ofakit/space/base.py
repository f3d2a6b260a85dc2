"""The search-space interface shared by every family, and the per-layer shapes that latency tables key on."""
from __future__ import annotations

import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError, CapabilityError


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never more than 10 % below `value` (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class LayerShape:
    """One layer of a subnet as a latency table sees it.

    Attributes:
        op: "stem", "mbconv", "bottleneck", "final_expand", "feature_mix", "pool", "classifier", "maxpool".
        input: (height, width, channels) going in; (1, 1, features) for the classifier.
        output: (height, width, channels) coming out.
        kernel: spatial kernel size (0 where none).
        stride: spatial stride.
        mid: expanded (middle) channels of an inverted residual / bottleneck block, else 0.
        se: whether the block has squeeze-and-excitation.
        act: activation name ("relu", "relu6", "hswish", or "" for none).
        skip: whether the block has an identity shortcut.
    """

    op: str
    input: tuple[int, int, int]
    output: tuple[int, int, int]
    kernel: int = 0
    stride: int = 1
    mid: int = 0
    se: bool = False
    act: str = ""
    skip: bool = False


@dataclass(frozen=True)
class Gene:
    """One choice of an arch, as a search holds it: a column of choice indices (see `ofakit.space.genome`).

    Attributes:
        field: the ArchConfig field it sets ("resolution", "depths", "kernel_sizes", "expand_ratios",
            "width_mults").
        index: position in that field (0 for the resolution).
        choices: the legal values, in the space's order; a row holds the index into them.
        gate: column of the depth gene that decides whether this gene shapes the network (-1: always does).
        threshold: the gene counts when that depth value is greater than this.
    """

    field: str
    index: int
    choices: tuple
    gate: int = -1
    threshold: int = 0


class SearchSpace(ABC):
    """What can be chosen: the legal values of every ArchConfig field, and fast facts computed from an arch alone.

    Subclasses fill `name`, `resolutions` and the abstract methods; everything a search needs (sampling, mutation,
    crossover, encoding, MACs, params) works from the ArchConfig without building a network.
    """

    name: str
    family: str  # "mbconv" or "resnet": which supernet builder serves this space
    resolutions: tuple[int, ...]
    num_classes: int = 1000

    # -- choices --------------------------------------------------------------------------------------------
    @abstractmethod
    def choices(self) -> dict[str, Any]:
        """The legal values of each field, JSON-ready (for `ofakit spaces`)."""

    @abstractmethod
    def num_architectures(self) -> int:
        """How many distinct networks the space holds (skipped slots not counted)."""

    @abstractmethod
    def sample(self, rng: random.Random) -> ArchConfig:
        """A uniformly random arch (each field drawn independently)."""

    @abstractmethod
    def largest(self) -> ArchConfig: ...

    @abstractmethod
    def smallest(self) -> ArchConfig: ...

    @abstractmethod
    def mutate(self, arch: ArchConfig, rng: random.Random, prob: float = 0.1) -> ArchConfig:
        """Redraw each field of `arch` with probability `prob`."""

    @abstractmethod
    def crossover(self, a: ArchConfig, b: ArchConfig, rng: random.Random) -> ArchConfig:
        """Take each field from `a` or `b` with equal probability."""

    @abstractmethod
    def genes(self) -> tuple[Gene, ...]:
        """The choices of an arch as columns, resolution first (what `Genome` searches over)."""

    # -- checks ---------------------------------------------------------------------------------------------
    @abstractmethod
    def _validate_fields(self, arch: ArchConfig) -> None:
        """Raise ArchError for an illegal value (everything but the space name and resolution)."""

    def validate(self, arch: ArchConfig) -> None:
        """Raise ArchError if `arch` is not a network of this space; warn for a resolution outside the search range.

        A CNN runs at any input size, so an off-range resolution (MIT publishes nets at 236 and 260) is allowed with
        a warning, but `sample`, `mutate` and the searches never propose one.
        """
        if not isinstance(arch, ArchConfig):
            raise ArchError(f"expected an ArchConfig, got {type(arch).__name__}")
        if arch.space != self.name:
            raise ArchError(
                f"arch is for space {arch.space!r}, not {self.name!r}; sample one with: "
                f"ofakit arch sample --space {self.name}"
            )
        self._validate_fields(arch)
        if arch.resolution not in self.resolutions:
            warnings.warn(
                f"resolution {arch.resolution} is outside the search range of space {self.name!r} "
                f"({self.resolutions[0]}-{self.resolutions[-1]}); the network runs, but search never proposes it",
                stacklevel=2,
            )

    def is_valid(self, arch: ArchConfig) -> bool:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.validate(arch)
        except ArchError:
            return False
        return True

    @staticmethod
    def _check_length(arch: ArchConfig, name: str, expected: int) -> None:
        got = len(getattr(arch, name))
        if got != expected:
            raise ArchError(f"'{name}' has {got} values; space {arch.space!r} needs {expected}")

    @staticmethod
    def _check_choice(value: Any, allowed: Sequence[Any], what: str, where: str, space: str) -> None:
        """Raise "kernel size 9 at block 4 is not allowed in space 'x' (choices: 3, 5, 7)"."""
        if value not in allowed:
            listed = ", ".join(str(v) for v in allowed)
            raise ArchError(f"{what} {value} at {where} is not allowed in space {space!r} (choices: {listed})")

    # -- optional capabilities: a space family that has one overrides the method ------------------------------
    def _lacks(self, capability: str, needed_by: str) -> CapabilityError:
        return CapabilityError(f"space {self.name!r} ({self.family} family) has no {capability}, which {needed_by} "
                               f"needs")

    @staticmethod
    def depth_at_most(depth: int, allowed: Sequence[int]) -> int:
        """The rule every uniform subnet follows per stage: `depth` if allowed, else the largest allowed depth below
        it, else the smallest allowed."""
        below = [d for d in allowed if d <= depth]
        return max(below) if below else min(allowed)

    def uniform(self, *, resolution: int, depth: int, **choices: Any) -> ArchConfig:
        """The subnet with one value of each choice everywhere (`choices`: the family's fields, e.g. kernel, expand,
        width) and every stage at `depth`, or at the largest depth it allows that is not above, else its smallest."""
        raise self._lacks("uniform subnets", "this command")

    def uniform_grid(self, resolutions: Sequence[int] = ()) -> list[ArchConfig]:
        """Every uniform subnet (`uniform`) at each of `resolutions` (default: the space's): the coarse grid of
        coarse-to-fine search and the corners a predictor must see."""
        raise self._lacks("uniform subnets", "coarse-to-fine search and --uniform records")

    def restricted_sample(self, rng: random.Random, *, resolution: int,
                          opened: Mapping[str, Sequence[Any]]) -> ArchConfig:
        """A random arch at `resolution` drawing each field only from the values `opened` names for it (field ->
        allowed values, e.g. {"kernel_sizes": (7,)}; a field not named draws from all of its choices): how a
        progressive-shrinking stage samples. A stage whose depths are all closed keeps its largest depth."""
        raise self._lacks("restricted sampling", "progressive shrinking")

    def block_sum(self, per_layer: Callable[[int, LayerShape], float]) -> Any:
        """The vectorized per-layer sum of this space (`ofakit.space.additive.BlockSum`), or None where sums over
        layers go arch by arch."""
        return None

    def covering_archs(self, resolution: int) -> list[ArchConfig]:
        """Subnets that together hold every distinct layer shape of the space at `resolution` (what a layer-by-layer
        latency table profiles)."""
        raise self._lacks("layer enumeration", "layer-by-layer profiling (ofakit profile, table conversion)")

    def reference_arch(self) -> ArchConfig:
        """The fixed model a latency table times in every round to follow the machine's drift."""
        return self.smallest()

    def key(self, arch: ArchConfig) -> tuple:
        """What identifies the network `arch` builds (skipped slots left out): two archs with the same key are the
        same network, whatever values their skipped slots carry."""
        return (arch.space, *self.active_key(arch))

    # -- facts from the arch alone --------------------------------------------------------------------------
    @abstractmethod
    def active_key(self, arch: ArchConfig) -> tuple:
        """The values that define the network, skipped slots left out (see `key`)."""

    @abstractmethod
    def encode(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Fixed-length float32 features, one row per arch (skipped slots are zero)."""

    @property
    @abstractmethod
    def feature_names(self) -> list[str]:
        """A name for each column of `encode`."""

    @abstractmethod
    def layers(self, arch: ArchConfig) -> list[LayerShape]:
        """The layers of the subnet in execution order, with their shapes at the arch's resolution."""

    @abstractmethod
    def macs(self, arch: ArchConfig) -> int:
        """Multiply-accumulates of one image through conv and linear layers (FLOPs / 2)."""

    @abstractmethod
    def params(self, arch: ArchConfig) -> int:
        """Trainable parameters of the extracted subnet (conv, batch-norm affine and linear)."""

    def summary(self) -> dict[str, Any]:
        """Name, choices and size, for `ofakit spaces`."""
        return {"name": self.name, "family": self.family, "choices": self.choices(),
                "num_architectures": self.num_architectures()}

"""ArchConfig: the one value that names a subnet, passed through every stage of ofakit.

Frozen and made of tuples, it is hashable: a cache key, a set member for de-duplication, a stable JSON record.
Equality and hashing are those of the value itself. Slots of blocks that depth skips still carry a value (so MIT's
configs and user files round-trip unchanged), so two archs that differ only there are different values of the same
network: `SearchSpace.key(arch)` says which network an arch builds, and the search and the latency records compare
by it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofakit.errors import ArchError, ConfigError

_INT_FIELDS = ("depths", "kernel_sizes")
_NUM_FIELDS = ("expand_ratios", "width_mults")
_KNOWN_KEYS = ("space", "resolution", *_INT_FIELDS, *_NUM_FIELDS)


def _number(value: float) -> float | int:
    """Integral numbers as int (expand 6, not 6.0), others as float."""
    return int(value) if float(value).is_integer() else float(value)


@dataclass(frozen=True)
class ArchConfig:
    """One subnet of a search space.

    Args:
        space: registry name of the search space, e.g. "ofa-mbv3-w1.0".
        resolution: input image side in pixels.
        depths: active blocks per elastic stage.
        kernel_sizes: depthwise kernel per block slot (MobileNet spaces; empty for ResNet).
        expand_ratios: expansion ratio per block slot.
        width_mults: width multiplier per width group (ResNet space; empty elsewhere).
    """

    space: str
    resolution: int
    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...] = ()
    expand_ratios: tuple[float, ...] = ()
    width_mults: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.space, str) or not self.space:
            raise ArchError(f"'space' must be a non-empty string, got {self.space!r}")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution <= 0:
            raise ArchError(f"'resolution' must be a positive integer, got {self.resolution!r}")
        for name in _INT_FIELDS:
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values
            ):
                raise ArchError(f"'{name}' must be a list of integers, got {values!r}")
            object.__setattr__(self, name, tuple(values))
        for name in _NUM_FIELDS:
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
            ):
                raise ArchError(f"'{name}' must be a list of numbers, got {values!r}")
            object.__setattr__(self, name, tuple(_number(v) for v in values))

    @classmethod
    def trusted(cls, space: str, resolution: int, depths: tuple[int, ...], kernel_sizes: tuple[int, ...] = (),
                expand_ratios: tuple[float, ...] = (), width_mults: tuple[float, ...] = ()) -> ArchConfig:
        """Build without the type checks, for values a space produced itself (tuples of its own choices).

        A search turns thousands of rows of choice indices back into archs; the checks of `__post_init__` would
        cost more than the search. User input never comes through here.
        """
        arch = object.__new__(cls)
        for name, value in (("space", space), ("resolution", resolution), ("depths", depths),
                            ("kernel_sizes", kernel_sizes), ("expand_ratios", expand_ratios),
                            ("width_mults", width_mults)):
            object.__setattr__(arch, name, value)
        return arch

    # -- serialisation ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; list fields that the space does not use (empty) are left out."""
        data: dict[str, Any] = {"space": self.space, "resolution": self.resolution}
        for name in (*_INT_FIELDS, *_NUM_FIELDS):
            values = getattr(self, name)
            if values or name == "depths":
                data[name] = list(values)
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        """Build from a dict; unknown or missing keys raise ArchError naming them."""
        if not isinstance(data, Mapping):
            raise ArchError(f"an ArchConfig must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_KNOWN_KEYS))
        if unknown:
            raise ArchError(
                f"unknown ArchConfig key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(_KNOWN_KEYS)}"
            )
        missing = [k for k in ("space", "resolution", "depths") if k not in data]
        if missing:
            raise ArchError(f"ArchConfig is missing key(s) {', '.join(map(repr, missing))}")
        return cls(**{k: data[k] for k in _KNOWN_KEYS if k in data})

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"malformed ArchConfig JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        """Read an ArchConfig JSON file ('-': stdin); a missing, unreadable, non-UTF-8 or malformed file, or one that
        is not an ArchConfig, is one ConfigError line naming the file."""
        from ofakit.io import read_json_file

        return read_json_file(path, "an arch file", build=cls.from_dict)

"""Limits a search must respect (latency on a device, MACs, params), evaluated on whole batches of archs."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, OfakitError
from ofakit.space import SearchSpace

CostFn = Callable[[Sequence[ArchConfig]], np.ndarray]


class InfeasibleError(OfakitError, ValueError):
    """No subnet of the space can meet the limits."""


@dataclass(frozen=True)
class Limit:
    """`cost(archs) <= maximum`, e.g. latency_ms on note10 <= 30."""

    name: str  # e.g. "latency_ms@note10", "macs", "params"
    maximum: float
    cost: CostFn
    unit: str = ""

    def check(self, archs: Sequence[ArchConfig]) -> tuple[np.ndarray, np.ndarray]:
        """(values, feasible mask) for a batch."""
        values = np.asarray(self.cost(archs), dtype=np.float64)
        return values, values <= self.maximum


def macs_limit(space: SearchSpace, maximum: float) -> Limit:
    return Limit("macs", maximum, lambda archs: np.array([space.macs(a) for a in archs], dtype=np.float64))


def params_limit(space: SearchSpace, maximum: float) -> Limit:
    return Limit("params", maximum, lambda archs: np.array([space.params(a) for a in archs], dtype=np.float64))


def feasible(limits: Sequence[Limit], archs: Sequence[ArchConfig]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mask of archs meeting every limit, and each limit's values."""
    mask = np.ones(len(archs), dtype=bool)
    values = {}
    for limit in limits:
        v, ok = limit.check(archs)
        values[limit.name] = v
        mask &= ok
    return mask, values


_TIME = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*$", re.IGNORECASE)
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*$")


def parse_latency_ms(text: str) -> float:
    """'30ms', '30' (milliseconds) or '0.03s' -> 30.0."""
    match = _TIME.match(str(text))
    if not match:
        raise ConfigError(f"cannot read latency {text!r}; write e.g. 30ms, 30 (milliseconds) or 0.03s")
    value, unit = float(match.group(1)), (match.group(2) or "ms").lower()
    return value * {"ms": 1.0, "s": 1000.0, "us": 0.001}[unit]


def parse_count(text: str, what: str = "count") -> float:
    """'300M', '1.2G', '5e6'-free forms like '5000000' or '5M' -> a number."""
    match = _COUNT.match(str(text))
    if not match:
        raise ConfigError(f"cannot read {what} {text!r}; write e.g. 300M, 1.2G, 5M or a plain number")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]

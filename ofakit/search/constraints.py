"""Limits a search must respect (latency on a device, MACs, params), evaluated on whole batches of genome rows."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, OfakitError
from ofakit.space.additive import Additive
from ofakit.space.genome import Genome

RowFn = Callable[[np.ndarray], np.ndarray]  # genome rows [n, genes] -> one value per row


class InfeasibleError(OfakitError, ValueError):
    """No subnet of the space can meet the limits."""


@dataclass(frozen=True)
class Limit:
    """`cost(rows) <= maximum` over genome rows, e.g. latency_ms on note10 <= 30."""

    name: str  # e.g. "latency_ms@note10", "macs", "params"
    maximum: float
    cost: RowFn
    unit: str = ""
    additive: Additive | None = None  # the same cost in additive form, when it has one

    def check(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, feasible mask) for a batch of rows."""
        values = np.asarray(self.cost(rows), dtype=np.float64)
        return values, values <= self.maximum


def arch_cost(genome: Genome, cost: Callable[[Sequence[ArchConfig]], np.ndarray]) -> RowFn:
    """A cost over archs as a cost over rows (decodes each batch: for costs without a vectorized form)."""
    return lambda rows: np.asarray(cost(genome.decode(rows)), dtype=np.float64)


def _space_limit(name: str, genome: Genome, which: int, maximum: float) -> Limit:
    """MACs (0) or params (1) of rows: the space's block sum where it has one, else per decoded arch."""
    space = genome.space
    total = space.block_sum(lambda _, layer: float(space.layer_costs(layer)[which]))
    if total is not None:
        return Limit(name, maximum, lambda rows: total.of_rows(genome, rows), additive=Additive(total))
    per_arch = space.macs if which == 0 else space.params
    return Limit(name, maximum,
                 arch_cost(genome, lambda archs: np.array([per_arch(a) for a in archs], dtype=np.float64)))


def macs_limit(genome: Genome, maximum: float) -> Limit:
    return _space_limit("macs", genome, 0, maximum)


def params_limit(genome: Genome, maximum: float) -> Limit:
    return _space_limit("params", genome, 1, maximum)


def latency_limit(name: str, maximum: float, estimator: Any, genome: Genome, scale: float = 1.0) -> Limit:
    """Estimated latency (ms) of rows <= maximum, with the estimator's additive form when it has one (the LUT sum)."""
    return Limit(name, maximum, lambda rows: estimator.estimate_rows(genome, rows, scale=scale), "ms",
                 estimator.additive(scale))


def feasible(limits: Sequence[Limit], rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mask of rows meeting every limit, and each limit's values."""
    mask = np.ones(len(rows), dtype=bool)
    values = {}
    for limit in limits:
        v, ok = limit.check(rows)
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
    ms = value * {"ms": 1.0, "s": 1000.0, "us": 0.001}[unit]
    return float(f"{ms:.12g}")  # 12 significant digits: 700us is 0.7 ms, not 0.7000000000000001


def parse_count(text: str, what: str = "count") -> float:
    """'300M', '1.2G', '5e6'-free forms like '5000000' or '5M' -> a number."""
    match = _COUNT.match(str(text))
    if not match:
        raise ConfigError(f"cannot read {what} {text!r}; write e.g. 300M, 1.2G, 5M or a plain number")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]

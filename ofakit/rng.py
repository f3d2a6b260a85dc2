"""The seeded random stream of the searches: SplitMix64 over a counter, in NumPy.

A search draws only uniform floats and bounded integers, in batches. NumPy's `Generator` would do, but importing
`numpy.random` costs ~10 ms (it loads `secrets`, `hashlib` and eight extension modules), a third of the set-up of a
cold `specialize` call, and a user waits for it on every command. `Stream` needs nothing beyond NumPy's arrays: each
draw is SplitMix64's output function applied to the next values of a Weyl sequence (the seed's own starting point plus
multiples of the golden-ratio constant), the generator of Java's SplittableRandom (Steele, Lea and Flood, OOPSLA 2014),
which passes BigCrush. The same seed gives the same draws on every platform.

Every search function takes any `Draws`: a `Stream`, or a `numpy.random.Generator`.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: the Weyl sequence visits every value
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))
_UNIT = 2.0 ** -53


class Draws(Protocol):
    """What a search draws from: uniform floats in [0, 1) and integers in [0, high) (NumPy's Generator has both)."""

    def random(self, size: int | tuple[int, ...] | None = None) -> np.ndarray | float: ...

    def integers(self, low: int, high: int | None = None, size: int | tuple[int, ...] | None = None
                 ) -> np.ndarray | int: ...


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (uint64 arithmetic wraps, as it must)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _count(size: int | tuple[int, ...] | None) -> int:
    """How many draws a NumPy-style `size` (None, an int, or a shape) asks for."""
    return 1 if size is None else int(np.prod(size))


class Stream:
    """A seeded stream of 64-bit draws.

    Args:
        seed: a non-negative integer (below 2^64); different seeds start at unrelated points of the sequence.
    """

    def __init__(self, seed: int = 0) -> None:
        seed = int(seed)
        if not 0 <= seed < 2**64:
            raise ValueError(f"a random seed is an integer in [0, 2^64), got {seed}")
        self._state = _mix(np.array([seed], dtype=np.uint64))  # the starting point, hashed from the seed
        self._drawn = 0

    def bits(self, n: int) -> np.ndarray:
        """The next `n` draws as uint64."""
        steps = np.arange(self._drawn + 1, self._drawn + n + 1, dtype=np.uint64)
        self._drawn += n
        return _mix(self._state + steps * _GAMMA)

    def random(self, size: int | tuple[int, ...] | None = None) -> np.ndarray | float:
        """Floats in [0, 1), uniform on a 2^-53 grid; one float when `size` is None."""
        out = (self.bits(_count(size)) >> _S11).astype(np.float64) * _UNIT
        return float(out[0]) if size is None else out.reshape(size)

    def integers(self, low: int, high: int | None = None, size: int | tuple[int, ...] | None = None
                 ) -> np.ndarray | int:
        """Integers in [low, high) (in [0, low) when `high` is None), as NumPy's `Generator.integers`; int64.

        Drawn as floor(u * span): for spans below 2^32 every value's chance is within 2^-21 of 1 / span.
        """
        low, high = (0, int(low)) if high is None else (int(low), int(high))
        if high <= low:
            raise ValueError(f"integers: high ({high}) must be above low ({low})")
        span = high - low
        if span > 2**53:
            raise ValueError(f"integers: a span of {span} is more than this stream draws exactly (2^53)")
        out = (self.random(_count(size)) * span).astype(np.int64) + low
        return int(out[0]) if size is None else out.reshape(size)


"""The registry of search spaces (filled by the family modules of this package)."""
from __future__ import annotations

from collections.abc import Callable

from ofakit.registry import Registry
from ofakit.space.base import SearchSpace

SPACES: Registry[Callable[[], SearchSpace]] = Registry("search space")

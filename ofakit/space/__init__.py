"""Search spaces: what can be chosen. `get_space(name)` returns the (cached) space registered under `name`."""
from __future__ import annotations

from functools import lru_cache

from ofakit.space import mbv3, proxyless, resnet, tiny  # noqa: F401  (register the spaces)
from ofakit.space.base import LayerShape, SearchSpace, make_divisible
from ofakit.space.registry import SPACES


@lru_cache(maxsize=None)
def _build(name: str) -> SearchSpace:
    return SPACES.get(name)()


def get_space(name: str) -> SearchSpace:
    """The search space registered under `name`; raises UnknownNameError listing the known spaces."""
    return _build(SPACES.canonical(name))


__all__ = ["SPACES", "LayerShape", "SearchSpace", "get_space", "make_divisible"]

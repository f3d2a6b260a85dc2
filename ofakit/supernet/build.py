"""Build the supernet that serves a search space: one builder per space family, in a registry."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ofakit.registry import Registry
from ofakit.space import SearchSpace, get_space
from ofakit.supernet.mbconv import MBConvSupernet
from ofakit.supernet.resnet import ResNetSupernet

Supernet = MBConvSupernet | ResNetSupernet

BUILDERS: Registry[Callable[..., Supernet]] = Registry("supernet family")
BUILDERS.add("mbconv", MBConvSupernet)
BUILDERS.add("resnet", ResNetSupernet)


def build_supernet(space: str | SearchSpace, *, num_classes: int | None = None, dropout: float = 0.0) -> Supernet:
    """A freshly initialised supernet for `space` (a name or a SearchSpace), set to its largest subnet."""
    sp = get_space(space) if isinstance(space, str) else space
    return BUILDERS.get(sp.family)(sp, num_classes=num_classes, dropout=dropout)


def is_supernet(model: nn.Module) -> bool:
    return isinstance(model, (MBConvSupernet, ResNetSupernet))

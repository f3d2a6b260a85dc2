"""Build the supernet that serves a search space."""
from __future__ import annotations

from torch import nn

from ofakit.space import SearchSpace, get_space
from ofakit.space.mbconv import MBConvSpace
from ofakit.space.resnet import ResNetSpace
from ofakit.supernet.mbconv import MBConvSupernet
from ofakit.supernet.resnet import ResNetSupernet

Supernet = MBConvSupernet | ResNetSupernet


def build_supernet(space: str | SearchSpace, *, num_classes: int | None = None, dropout: float = 0.0) -> Supernet:
    """A freshly initialised supernet for `space` (a name or a SearchSpace), set to its largest subnet."""
    sp = get_space(space) if isinstance(space, str) else space
    if isinstance(sp, MBConvSpace):
        return MBConvSupernet(sp, num_classes=num_classes, dropout=dropout)
    if isinstance(sp, ResNetSpace):
        return ResNetSupernet(sp, num_classes=num_classes, dropout=dropout)
    raise TypeError(f"no supernet builder for space family {type(sp).__name__}")


def is_supernet(model: nn.Module) -> bool:
    return isinstance(model, (MBConvSupernet, ResNetSupernet))

"""The elastic ResNet-50 supernet (depth, expand ratio, width) of MIT's once-for-all."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ofakit.arch import ArchConfig
from ofakit.space.resnet import ResNetSpace
from ofakit.supernet.blocks import DynamicBottleneck, DynamicConvBNAct
from ofakit.supernet.dynamic_linear import DynamicLinear
from ofakit.supernet.mbconv import _init_weights


class ResNetSupernet(nn.Module):
    """All subnets of a ResNet space in one set of weights; `set_active(arch)` picks the one that runs."""

    def __init__(self, space: ResNetSpace, *, num_classes: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        s = space.spec
        self.space = space
        self.num_classes = num_classes or space.num_classes
        eps, mom = s.bn_eps, s.bn_momentum
        mid, c = max(space.stem_mid.values()), max(space.stem_out.values())
        self.stem0 = DynamicConvBNAct(3, mid, kernel_size=3, stride=2, residual=False, bn_eps=eps, bn_momentum=mom)
        self.stem1 = DynamicConvBNAct(mid, mid, kernel_size=3, stride=1, residual=True, bn_eps=eps, bn_momentum=mom)
        self.stem2 = DynamicConvBNAct(mid, c, kernel_size=3, stride=1, residual=False, bn_eps=eps, bn_momentum=mom)
        blocks = []
        for i, slots in enumerate(space.stage_slots):
            width = max(space.stage_out[i].values())
            for j in range(len(slots)):
                blocks.append(DynamicBottleneck(c, width, expand_choices=s.expand_choices,
                                                stride=s.stage_strides[i] if j == 0 else 1, identity=j > 0,
                                                bn_eps=eps, bn_momentum=mom))
                c = width
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = DynamicLinear(c, self.num_classes)
        _init_weights(self)
        self.active_arch = space.largest()
        self.set_active(self.active_arch)

    def set_active(self, arch: ArchConfig) -> None:
        """Make `arch` the subnet that `forward` runs (the one mutator of the supernet)."""
        sp = self.space
        sp.validate(arch)
        self.active_arch = arch
        w = arch.width_mults
        self.stem0.conv.active_out = self.stem1.conv.active_out = sp.stem_mid[w[0]]
        self.stem2.conv.active_out = sp.stem_out[w[1]]
        for i, slots in enumerate(sp.stage_slots):
            for slot in slots:
                self.blocks[slot].configure(arch.expand_ratios[slot], sp.stage_out[i][w[2 + i]])
        self._keep_stem1 = sp.keeps_stem_block(arch)
        self._active_blocks = [self.blocks[i] for i in sp.active_slots(arch)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem0(x)
        if self._keep_stem1:
            x = self.stem1(x)
        x = F.max_pool2d(self.stem2(x), 3, 2, 1)
        for block in self._active_blocks:
            x = block(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(self.dropout(x))

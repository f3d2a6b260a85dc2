"""The elastic MBConv supernet (OFA MobileNetV3 / ProxylessNAS families, CIFAR and tiny variants)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ofakit.arch import ArchConfig
from ofakit.space.mbconv import MBConvSpace
from ofakit.supernet.blocks import DynamicMBConv
from ofakit.supernet.static import make_activation


class MBConvSupernet(nn.Module):
    """All subnets of an MBConv space in one set of weights; `set_active(arch)` picks the one that runs.

    Args:
        space: the search space.
        num_classes: classifier outputs (defaults to the space's).
        dropout: dropout before the classifier.
    """

    def __init__(self, space: MBConvSpace, *, num_classes: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        s = space.spec
        self.space = space
        self.num_classes = num_classes or space.num_classes
        eps, mom = s.bn_eps, s.bn_momentum
        self.stem_conv = nn.Conv2d(3, s.stem_width, 3, s.stem_stride, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(s.stem_width, eps=eps, momentum=mom)
        self.stem_act = make_activation(s.stem_act, inplace=True)
        self.first_block = DynamicMBConv(s.stem_width, s.first_width, kernel_choices=(3,), expand_choices=(1,),
                                         stride=1, act=s.first_act, se=s.first_se, bn_eps=eps, bn_momentum=mom)
        blocks = []
        c = s.first_width
        for stage in s.stages:
            for i in range(stage.max_depth):
                blocks.append(DynamicMBConv(c, stage.width, kernel_choices=s.kernel_choices,
                                            expand_choices=s.expand_choices, stride=stage.stride if i == 0 else 1,
                                            act=stage.act, se=stage.se, bn_eps=eps, bn_momentum=mom))
                c = stage.width
        self.blocks = nn.ModuleList(blocks)
        self.head_act = make_activation(s.head_act, inplace=True)  # on fresh BN or conv outputs only
        if s.head == "mbv3":
            self.final_expand_conv = nn.Conv2d(c, s.final_expand_width, 1, bias=False)
            self.final_expand_bn = nn.BatchNorm2d(s.final_expand_width, eps=eps, momentum=mom)
            self.feature_mix_conv = nn.Conv2d(s.final_expand_width, s.last_width, 1, bias=False)
            self.feature_mix_bn = None
        else:
            self.final_expand_conv = self.final_expand_bn = None
            self.feature_mix_conv = nn.Conv2d(c, s.last_width, 1, bias=False)
            self.feature_mix_bn = nn.BatchNorm2d(s.last_width, eps=eps, momentum=mom)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(s.last_width, self.num_classes)
        _init_weights(self)
        self.active_arch = space.largest()
        self.set_active(self.active_arch)

    def set_active(self, arch: ArchConfig) -> None:
        """Make `arch` the subnet that `forward` runs (the one mutator of the supernet)."""
        self.space.validate(arch)
        self.active_arch = arch
        for slot, block in enumerate(self.blocks):
            block.configure(arch.kernel_sizes[slot], arch.expand_ratios[slot])
        self._active_blocks = [self.blocks[i] for i in self.space.active_slots(arch)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem_act(self.stem_bn(self.stem_conv(x))))
        for block in self._active_blocks:
            x = block(x)
        if self.final_expand_conv is not None:  # MobileNetV3 head: expand, pool, mix without BN
            x = self.head_act(self.final_expand_bn(self.final_expand_conv(x)))
            x = self.head_act(self.feature_mix_conv(F.adaptive_avg_pool2d(x, 1)))
        else:  # ProxylessNAS head: mix with BN, then pool
            x = F.adaptive_avg_pool2d(self.head_act(self.feature_mix_bn(self.feature_mix_conv(x))), 1)
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def _init_weights(model: nn.Module) -> None:
    """He init (fan-out) for convs, unit BN, small uniform linear: the usual MobileNet recipe."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.in_features**0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)

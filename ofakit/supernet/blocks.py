"""Elastic blocks of the supernets: the MBConv block (kernel, expand), squeeze-excite, and the ResNet bottleneck
(expand, width). Each block is configured by its network's `set_active`; its input width follows the input."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ofakit.space.base import make_divisible
from ofakit.space.mbconv import mid_channels, se_channels
from ofakit.supernet.dynamic_bn import DynamicBatchNorm2d
from ofakit.supernet.dynamic_conv import DynamicConv2d, DynamicDepthwiseConv2d
from ofakit.supernet.static import make_activation


def _bn(channels: int, eps: float, momentum: float) -> DynamicBatchNorm2d:
    return DynamicBatchNorm2d(channels, eps=eps, momentum=momentum)


class DynamicSE(nn.Module):
    """Squeeze-excite whose hidden width is `se_channels(active channels)`."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.reduce = DynamicConv2d(max_channels, se_channels(max_channels), bias=True)
        self.expand = DynamicConv2d(se_channels(max_channels), max_channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        self.reduce.active_out = se_channels(c)
        self.expand.active_out = c
        if not self.training:  # the static SqueezeExcite's arithmetic, so that extracted subnets match exactly
            y = F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))
            return x * F.hardsigmoid(self.expand(y))
        # Training: the 1x1 convs on the pooled (N, C, 1, 1) map run as matrix products on (N, C), the same weights
        # and the same function (up to float rounding), 2-3x faster than conv kernels on 1x1 maps in backward.
        y = F.relu(F.linear(x.mean((2, 3)), self.reduce.active_weight(c)[:, :, 0, 0], self.reduce.active_bias()))
        gate = F.linear(y, self.expand.active_weight(y.shape[1])[:, :, 0, 0], self.expand.active_bias())
        gate = F.hardsigmoid(gate)
        return x * gate.view(n, c, 1, 1)


class DynamicMBConv(nn.Module):
    """Inverted residual block with elastic kernel and expand ratio (no expand conv when the only ratio is 1)."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_choices: tuple[int, ...],
                 expand_choices: tuple[float, ...], stride: int, act: str, se: bool,
                 bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.act_name = act
        max_mid = mid_channels(in_channels, max(expand_choices)) if tuple(expand_choices) != (1,) else in_channels
        if tuple(expand_choices) != (1,):
            self.expand_conv: DynamicConv2d | None = DynamicConv2d(in_channels, max_mid)
            self.expand_bn: DynamicBatchNorm2d | None = _bn(max_mid, bn_eps, bn_momentum)
        else:
            self.expand_conv = self.expand_bn = None
        self.dw_conv = DynamicDepthwiseConv2d(max_mid, kernel_choices, stride)
        self.dw_bn = _bn(max_mid, bn_eps, bn_momentum)
        self.se = DynamicSE(max_mid) if se else None
        self.project_conv = DynamicConv2d(max_mid, out_channels)
        self.project_bn = _bn(out_channels, bn_eps, bn_momentum)
        self.act = make_activation(act, inplace=True)  # applied to fresh BN outputs only
        self.residual = stride == 1 and in_channels == out_channels
        self.active_kernel = max(kernel_choices)
        self.active_expand = max(expand_choices)

    def configure(self, kernel: int, expand: float) -> None:
        self.active_kernel, self.active_expand = kernel, expand
        self.dw_conv.active_kernel = kernel
        if self.expand_conv is not None:
            self.expand_conv.active_out = mid_channels(self.in_channels, expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand_conv is not None:
            y = self.act(self.expand_bn(self.expand_conv(y)))
        y = self.act(self.dw_bn(self.dw_conv(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project_conv(y))
        return x + y if self.residual else y


class DynamicConvBNAct(nn.Module):
    """conv -> BN -> ReLU with elastic output width (the ResNet stem), optionally with an identity shortcut."""

    def __init__(self, max_in: int, max_out: int, *, kernel_size: int, stride: int, residual: bool,
                 bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.conv = DynamicConv2d(max_in, max_out, kernel_size, stride)
        self.bn = _bn(max_out, bn_eps, bn_momentum)
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        return x + y if self.residual else y


class DynamicBottleneck(nn.Module):
    """ResNet bottleneck with elastic expand ratio (middle width = out * e) and elastic output width."""

    def __init__(self, max_in: int, max_out: int, *, expand_choices: tuple[float, ...], stride: int,
                 identity: bool, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.stride = stride
        max_mid = make_divisible(round(max_out * max(expand_choices)), 8)
        self.conv1 = DynamicConv2d(max_in, max_mid)
        self.bn1 = _bn(max_mid, bn_eps, bn_momentum)
        self.conv2 = DynamicConv2d(max_mid, max_mid, 3, stride)
        self.bn2 = _bn(max_mid, bn_eps, bn_momentum)
        self.conv3 = DynamicConv2d(max_mid, max_out)
        self.bn3 = _bn(max_out, bn_eps, bn_momentum)
        self.identity = identity
        if not identity:
            self.down_conv: DynamicConv2d | None = DynamicConv2d(max_in, max_out)
            self.down_bn: DynamicBatchNorm2d | None = _bn(max_out, bn_eps, bn_momentum)
        else:
            self.down_conv = self.down_bn = None
        self.act = nn.ReLU()
        self.active_expand = max(expand_choices)
        self.active_out = max_out

    def configure(self, expand: float, out_channels: int) -> None:
        self.active_expand, self.active_out = expand, out_channels
        mid = make_divisible(round(out_channels * expand), 8)
        self.conv1.active_out = self.conv2.active_out = mid
        self.conv3.active_out = out_channels
        if self.down_conv is not None:
            self.down_conv.active_out = out_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)
        return self.down_bn(self.down_conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.act(y + self.shortcut(x))

"""Convolutions whose active width and kernel change at run time (Cai et al., "Once-for-All", ICLR 2020, sec. 3.3).

Elastic width keeps the leading channels. Elastic kernel takes the centre of the largest kernel and passes it
through a learned kernel-transformation matrix per step (7x7 -> 5x5 -> 3x3), shared by all channels of the layer,
so that a small kernel is not forced to equal the centre of a large one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ofakit.supernet.depthwise import depthwise_conv2d


class DynamicConv2d(nn.Conv2d):
    """A dense conv whose input channels follow the input and whose output channels are `active_out`."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1, bias: bool = False) -> None:
        super().__init__(max_in, max_out, kernel_size, stride, padding=kernel_size // 2, bias=bias)
        self.active_out = max_out

    def active_weight(self, in_channels: int) -> torch.Tensor:
        if in_channels == self.in_channels and self.active_out == self.out_channels:
            return self.weight
        return self.weight[: self.active_out, :in_channels]

    def active_bias(self) -> torch.Tensor | None:
        if self.bias is None or self.active_out == self.out_channels:
            return self.bias
        return self.bias[: self.active_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.active_weight(x.shape[1]), self.active_bias(), self.stride, self.padding)


class DynamicDepthwiseConv2d(nn.Module):
    """A depthwise conv with elastic channels (follow the input) and elastic kernel size (`active_kernel`).

    Args:
        max_channels: channels of the widest subnet.
        kernel_choices: the kernel sizes a subnet may pick; one transformation matrix per adjacent pair.
        stride: spatial stride.
    """

    def __init__(self, max_channels: int, kernel_choices: tuple[int, ...], stride: int = 1) -> None:
        super().__init__()
        self.kernel_choices = tuple(sorted(set(kernel_choices)))
        self.max_kernel = self.kernel_choices[-1]
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        # (big, small) pairs from the largest kernel down, e.g. (7, 5), (5, 3)
        self.steps = tuple(zip(self.kernel_choices[:0:-1], self.kernel_choices[-2::-1]))
        for big, small in self.steps:
            self.register_parameter(self.transform_name(big, small), nn.Parameter(torch.eye(small * small)))
        self.active_kernel = self.max_kernel

    @staticmethod
    def transform_name(big: int, small: int) -> str:
        return f"transform_{big}to{small}"

    def active_filter(self, channels: int, kernel: int) -> torch.Tensor:
        """The (channels, 1, kernel, kernel) filter of a subnet: centre crops, each mapped by x -> x @ M^T."""
        filt = self.weight if channels == self.weight.shape[0] else self.weight[:channels]
        for big, small in self.steps:
            if big <= kernel:
                break
            start = (big - small) // 2
            centre = filt[:, :, start : start + small, start : start + small].reshape(channels, small * small)
            filt = F.linear(centre, getattr(self, self.transform_name(big, small))).reshape(channels, 1, small, small)
        return filt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, k = x.shape[1], self.active_kernel
        return depthwise_conv2d(x, self.active_filter(c, k), self.stride, k // 2)

"""Plain `torch.nn` building blocks of extracted subnets: only Conv2d, BatchNorm2d, Linear, pooling and activations
inside, so that ONNX, CoreML and TensorRT see standard layers."""
from __future__ import annotations

import torch
from torch import nn

from ofakit.arch import ArchConfig

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}


def make_activation(name: str, *, inplace: bool = False) -> nn.Module:
    """The activation `name`; `inplace=True` overwrites its input (for training, where the input is a fresh BN output
    that nothing else reads: saves a tensor per layer and a pass over memory)."""
    return ACTIVATIONS[name](inplace=inplace)


class SqueezeExcite(nn.Module):
    """x * hard_sigmoid(W2 relu(W1 avgpool(x))) (Hu et al., CVPR 2018, as in MobileNetV3)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MBConv block: optional 1x1 expand, depthwise conv (+ SE), 1x1 project, identity shortcut when shapes allow."""

    def __init__(self, expand: nn.Module | None, depthwise: nn.Module, project: nn.Module, residual: bool) -> None:
        super().__init__()
        self.expand = expand if expand is not None else nn.Identity()
        self.depthwise = depthwise
        self.project = project
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1, 3x3 (strided), 1x1, plus a shortcut (identity or avg-pool + 1x1 conv + BN)."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, conv3: nn.Module, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv1, conv2, conv3
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


class ResidualConv(nn.Module):
    """x + f(x) for a conv-BN-act `f` (the residual conv in the ResNet stem)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class StaticNet(nn.Module):
    """An extracted subnet: features -> global average pool -> head -> classifier.

    Attributes:
        arch: the ArchConfig it was extracted for (a plain attribute, not saved in the state dict).
    """

    def __init__(self, features: nn.Sequential, head: nn.Sequential, classifier: nn.Sequential,
                 arch: ArchConfig) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = head
        self.classifier = classifier
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.pool(self.features(x))))


@torch.no_grad()
def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in an `nn.Sequential` into that conv's weight
    and bias (the BN becomes `nn.Identity`), in place; returns `net`.

    For inference only (the frozen teacher of progressive shrinking): the result computes the same function as the
    eval-mode network up to float rounding, one pass over each feature map fewer per layer.
    """
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.running_var is not None):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                               conv.dilation, conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
            folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            folded.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
            seq[i], seq[i + 1] = folded, nn.Identity()
    return net

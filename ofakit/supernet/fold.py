"""Fold batch norm into the convolution before it, for fast evaluation of an extracted subnet.

In eval mode a BN layer is an affine map per channel, so `bn(conv(x))` equals one conv with scaled weights and a
bias: the BN pass over the activations goes (on a CPU it costs about as much as the convs of a small MBConv net).
Done after BN recalibration, on a copy that is only evaluated.
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Replace every `Conv2d` directly followed by a `BatchNorm2d` in an `nn.Sequential` by one conv with the BN's
    running statistics and affine folded in, and the BN by an identity, in place; returns how many were folded.

    The model must be in eval mode and stay there (the folded conv no longer normalizes by batch statistics).
    """
    if model.training:
        raise ValueError("fold_batchnorm changes what a model computes in training mode; call model.eval() first")
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                scale = (bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)) \
                    / torch.sqrt(bn.running_var + bn.eps)
                shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  conv.dilation, conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
                fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
                fused.bias.copy_((bias - bn.running_mean) * scale + shift)
                seq._modules[a], seq._modules[b] = fused, nn.Identity()
                folded += 1
    return folded

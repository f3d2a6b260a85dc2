"""Channel sorting by importance (OFA, sec. 3.3 "elastic width"): reorder the expanded channels of every block so
that the most important come first, where a subnet with a smaller expand ratio takes them.

The permutation is applied consistently to every tensor that touches those channels, so the network computes the
same function before and after (for the full-width subnet exactly; smaller subnets then keep the important channels).
Importance of a channel is the L1 norm of the weights that read it in the next layer.
"""
from __future__ import annotations

import torch
from torch import nn

from ofakit.supernet.blocks import DynamicBottleneck, DynamicMBConv, DynamicSE


def _order(reader_weight: torch.Tensor) -> torch.Tensor:
    """Channels (dim 1 of the reading layer's weight) by decreasing L1 importance."""
    dims = [d for d in range(reader_weight.dim()) if d != 1]
    return torch.argsort(reader_weight.abs().sum(dim=dims), descending=True)


def _permute(param: torch.Tensor | None, order: torch.Tensor, dim: int) -> None:
    if param is not None:
        param.data.copy_(param.data.index_select(dim, order))


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        _permute(t, order, 0)


def _sort_se(se: DynamicSE) -> None:
    order = _order(se.expand.weight)
    _permute(se.reduce.weight, order, 0)
    _permute(se.reduce.bias, order, 0)
    _permute(se.expand.weight, order, 1)


def _sort_mbconv(block: DynamicMBConv) -> None:
    if block.expand_conv is None:
        return
    if block.se is not None:
        _sort_se(block.se)
    order = _order(block.project_conv.weight)
    _permute(block.expand_conv.weight, order, 0)
    _permute_bn(block.expand_bn, order)
    _permute(block.dw_conv.weight, order, 0)
    _permute_bn(block.dw_bn, order)
    if block.se is not None:
        _permute(block.se.reduce.weight, order, 1)
        _permute(block.se.expand.weight, order, 0)
        _permute(block.se.expand.bias, order, 0)
    _permute(block.project_conv.weight, order, 1)


def _sort_bottleneck(block: DynamicBottleneck) -> None:
    order = _order(block.conv3.weight)  # conv2's outputs, read by conv3
    _permute(block.conv2.weight, order, 0)
    _permute_bn(block.bn2, order)
    _permute(block.conv3.weight, order, 1)
    order = _order(block.conv2.weight)  # conv1's outputs, read by conv2
    _permute(block.conv1.weight, order, 0)
    _permute_bn(block.bn1, order)
    _permute(block.conv2.weight, order, 1)


@torch.no_grad()
def sort_channels(supernet: nn.Module) -> None:
    """Reorder the middle channels of every elastic block by importance, in place (function-preserving)."""
    for module in supernet.modules():
        if isinstance(module, DynamicMBConv):
            _sort_mbconv(module)
        elif isinstance(module, DynamicBottleneck):
            _sort_bottleneck(module)

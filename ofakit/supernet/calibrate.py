"""Batch-norm recalibration: recompute the running statistics of the active subnet on a few batches.

Weight sharing leaves the supernet's running statistics tuned to no subnet in particular; before evaluating a subnet,
OFA and BigNAS re-estimate them on a few thousand training images (Cai et al., 2020; Yu et al., "BigNAS", 2020).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], *, max_batches: int | None = None) -> int:
    """Reset every BN layer's running statistics and re-estimate them as an exact average over `batches`.

    Works on a supernet (only the active channels' statistics change) and on an extracted subnet. The model is left
    in eval mode; BN momenta are restored. Returns the number of batches used.

    Args:
        model: the network (its dropout is disabled during the pass).
        batches: input tensors (already on the model's device), or (input, label) pairs.
        max_batches: stop after this many.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts the same
    model.eval()
    for bn in bns:
        bn.train()
    used = 0
    try:
        for batch in batches:
            if max_batches is not None and used >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x)
            used += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    if used == 0:
        raise ValueError("BN recalibration needs at least one batch")
    return used

"""Batch norm over the leading channels of a wider layer: one set of statistics shared by all subnets."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` that normalises however many leading channels the input has.

    Running statistics of the active channels are updated in place (slices are views), with the same momentum rule
    as `nn.BatchNorm2d`, including the cumulative average when `momentum` is None (used by BN recalibration).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if track and self.running_mean is not None else None,
            self.running_var[:c] if track and self.running_var is not None else None,
            self.weight[:c] if self.weight is not None else None,
            self.bias[:c] if self.bias is not None else None,
            use_batch_stats, factor, self.eps,
        )

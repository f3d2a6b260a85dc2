"""A linear layer whose input features follow the input (elastic width before the classifier)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DynamicLinear(nn.Linear):
    def active_weight(self, in_features: int) -> torch.Tensor:
        return self.weight if in_features == self.in_features else self.weight[:, :in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.active_weight(x.shape[1]), self.bias)

"""Folding batch norm into the conv before it: the same outputs in eval mode, every BN gone, training mode refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ofakit.space import get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.supernet.calibrate import recalibrate_bn
from ofakit.supernet.fold import fold_batchnorm


@pytest.mark.parametrize("space", ["tiny", "ofa-mbv3-cifar"])
def test_a_folded_subnet_computes_the_same_function(space):
    torch.manual_seed(0)
    sp = get_space(space)
    sub = extract_subnet(build_supernet(sp), sp.largest())
    x = torch.randn(16, 3, sp.largest().resolution, sp.largest().resolution)
    recalibrate_bn(sub, [torch.randn_like(x) * 2 + 0.5])  # statistics far from 0 / 1: the fold must carry them
    with torch.no_grad():
        before = sub(x)
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in sub.modules())
        assert fold_batchnorm(sub) == n_bn > 0
        assert not any(isinstance(m, nn.BatchNorm2d) for m in sub.modules())
        torch.testing.assert_close(sub(x), before, rtol=1e-4, atol=1e-4)


def test_training_mode_is_refused():
    sub = extract_subnet(build_supernet("tiny"), get_space("tiny").smallest()).train()
    with pytest.raises(ValueError, match="call model.eval"):
        fold_batchnorm(sub)

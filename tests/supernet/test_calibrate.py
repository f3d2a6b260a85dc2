"""BN recalibration recomputes exact running statistics for the active subnet."""
from __future__ import annotations

import random

import pytest
import torch

from ofakit.space import get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.supernet.calibrate import recalibrate_bn


def test_statistics_are_the_exact_average_over_batches():
    net = build_supernet("tiny")
    batches = [torch.randn(4, 3, 16, 16) * (i + 1) for i in range(3)]
    recalibrate_bn(net, batches)
    stem = [net.stem_conv(b) for b in batches]
    with torch.no_grad():
        means = torch.stack([s.mean(dim=(0, 2, 3)) for s in stem])
        variances = torch.stack([s.var(dim=(0, 2, 3), unbiased=True) for s in stem])
    torch.testing.assert_close(net.stem_bn.running_mean, means.mean(0))
    torch.testing.assert_close(net.stem_bn.running_var, variances.mean(0))
    assert net.stem_bn.momentum == 0.1 and not net.training


def test_supernet_and_extracted_subnet_recalibrate_alike():
    space = get_space("tiny")
    net = build_supernet(space)
    arch = space.sample(random.Random(2))
    net.set_active(arch)
    sub = extract_subnet(net, arch)
    batches = [torch.randn(8, 3, 24, 24) for _ in range(2)]
    assert recalibrate_bn(net, batches) == 2
    recalibrate_bn(sub, batches)
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(sub(x), net(x), rtol=0, atol=1e-5)


def test_supernet_recalibration_touches_only_active_channels():
    space = get_space("tiny")
    net = build_supernet(space)
    block = net.blocks[0]
    block.expand_bn.running_mean.fill_(7.0)
    arch = space.smallest()  # expand 2 at block 0: 16 of 32 middle channels active
    net.set_active(arch)
    recalibrate_bn(net, [torch.randn(4, 3, 16, 16)], max_batches=1)
    active = block.expand_conv.active_out
    assert active < block.expand_bn.num_features
    # reset_running_stats covers the whole buffer; channels beyond the subnet keep the reset value
    assert torch.all(block.expand_bn.running_mean[active:] == 0)
    assert torch.any(block.expand_bn.running_mean[:active] != 0)


def test_needs_a_batch():
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_bn(build_supernet("tiny"), [])

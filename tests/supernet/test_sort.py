"""Channel sorting reorders the expanded channels by importance without changing the full network's function."""
from __future__ import annotations

import random

import pytest
import torch

from ofakit.space import get_space
from ofakit.supernet import build_supernet
from ofakit.supernet.sort import sort_channels


@pytest.mark.parametrize("name", ["tiny", "ofa-mbv3-w1.0", "ofa-resnet50"])
def test_sorting_preserves_the_largest_subnet_and_changes_smaller_ones(name, randomize_bn):
    space = get_space(name)
    torch.manual_seed(0)
    net = randomize_bn(build_supernet(space)).eval().double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    small = space.sample(random.Random(5))
    assert small.expand_ratios != space.largest().expand_ratios
    with torch.no_grad():
        net.set_active(space.largest())
        full_before = net(x)
        net.set_active(small)
        small_before = net(x)
        sort_channels(net)
        net.set_active(space.largest())
        full_after = net(x)
        net.set_active(small)
        small_after = net(x)
    torch.testing.assert_close(full_after, full_before, rtol=1e-10, atol=1e-10)
    assert (small_after - small_before).abs().max() > 1e-6  # smaller subnets now take other channels


def test_sorted_channels_are_in_decreasing_importance(randomize_bn):
    net = randomize_bn(build_supernet("tiny"))
    sort_channels(net)
    for block in net.blocks:
        importance = block.project_conv.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(importance[:-1] >= importance[1:])
        if block.se is not None:
            se_importance = block.se.expand.weight.abs().sum(dim=(0, 2, 3))
            assert torch.all(se_importance[:-1] >= se_importance[1:])

"""The relaxed supernet: at one-hot probabilities it is exactly the subnet (batch statistics in BN); at others it
mixes, and the probabilities get gradients."""
from __future__ import annotations

import random

import pytest
import torch

from ofakit.supernet import build_supernet, extract_subnet
from ofakit.supernet.relaxed import relaxed_forward


def one_hot(space, arch):
    s = space.spec
    kp = torch.zeros(space.num_slots, len(s.kernel_choices))
    ep = torch.zeros(space.num_slots, len(s.expand_choices))
    dp = torch.zeros(len(space.stage_slots), max(map(len, space.stage_depths)))
    for slot in range(space.num_slots):
        kp[slot, s.kernel_choices.index(arch.kernel_sizes[slot])] = 1
        ep[slot, s.expand_choices.index(arch.expand_ratios[slot])] = 1
    for stage, depth in enumerate(arch.depths):
        dp[stage, space.stage_depths[stage].index(depth)] = 1
    return kp, ep, dp


@pytest.mark.parametrize("name", ["tiny", "ofa-mbv3-cifar"])
def test_one_hot_probabilities_give_the_subnet_exactly(name):
    torch.manual_seed(0)
    net = build_supernet(name)
    space = net.space
    for seed in range(3):
        arch = space.sample(random.Random(seed))
        x = torch.randn(6, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            torch.testing.assert_close(relaxed_forward(net, x, *one_hot(space, arch)),
                                       extract_subnet(net, arch).train()(x), rtol=1e-4, atol=1e-5)


def test_mixed_probabilities_mix_and_carry_gradients():
    torch.manual_seed(0)
    net = build_supernet("tiny")
    space = net.space
    x = torch.randn(4, 3, 32, 32)
    probs = [torch.full(p.shape, 1.0 / p.shape[1], requires_grad=True) for p in one_hot(space, space.largest())]
    probs[2] = torch.tensor([[0.5, 0.5], [0.5, 0.5]], requires_grad=True)
    out = relaxed_forward(net, x, *probs)
    with torch.no_grad():
        ends = [relaxed_forward(net, x, *one_hot(space, a)) for a in (space.largest(), space.smallest())]
    assert not any(torch.allclose(out, e) for e in ends)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in probs)

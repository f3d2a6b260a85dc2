"""Subnet extraction is exact: the extracted plain network gives the supernet's outputs, MACs and params."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ofakit.space import SPACES, get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.supernet.calibrate import recalibrate_bn
from ofakit.supernet.static import StaticNet

STANDARD_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid,
                   nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Flatten, nn.Identity)


def _archs(space, n: int, seed: int):
    rng = random.Random(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n - 2)]


def _size(space) -> int:
    return 32 if space.name in ("tiny", "ofa-mbv3-cifar") else 48


@pytest.mark.parametrize("name", SPACES.names())
def test_extracted_subnet_matches_supernet(name, randomize_bn):
    space = get_space(name)
    torch.manual_seed(0)
    net = randomize_bn(build_supernet(space))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, _size(space), _size(space), generator=gen)
    calibration = [torch.randn(8, 3, _size(space), _size(space), generator=gen)]
    for arch in _archs(space, 20, seed=7):
        net.set_active(arch)
        # statistics that fit this subnet, so activations keep their scale and the output depends on the input
        recalibrate_bn(net, calibration)
        sub = extract_subnet(net, arch).eval()
        with torch.no_grad():
            expected, got = net(x), sub(x)
        assert got.shape == (2, space.num_classes)
        assert torch.allclose(got, expected, rtol=0, atol=1e-5), (arch, (got - expected).abs().max())
        # the two inputs give different outputs, so the comparison is not between constants
        assert (expected[0] - expected[1]).abs().max() > 1e-2


@pytest.mark.parametrize("name", SPACES.names())
def test_extracted_subnet_is_made_of_standard_layers(name, supernet_of):
    space = get_space(name)
    sub = extract_subnet(supernet_of(name), space.sample(random.Random(3)))
    assert isinstance(sub, StaticNet)
    leaves = [m for m in sub.modules() if not list(m.children()) and not isinstance(m, nn.Sequential)]
    odd = {type(m).__name__ for m in leaves if not isinstance(m, STANDARD_LAYERS)}
    assert not odd, f"non-standard layers in the extracted subnet: {odd}"


@pytest.mark.parametrize("name", SPACES.names())
def test_analytic_macs_and_params_match_the_extracted_network(name, supernet_of):
    space = get_space(name)
    net = supernet_of(name)
    for arch in _archs(space, 4, seed=11):
        sub = extract_subnet(net, arch).eval()
        params = sum(p.numel() for p in sub.parameters())
        sub = sub.to("meta")  # shapes only: counting at full resolution stays fast
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            sub(torch.empty(1, 3, arch.resolution, arch.resolution, device="meta"))
        assert counter.get_total_flops() // 2 == space.macs(arch), arch
        assert params == space.params(arch), arch


def test_extraction_leaves_the_supernet_unchanged(supernet_of):
    net = supernet_of("tiny")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    active = net.active_arch
    arch = get_space("tiny").smallest()
    extract_subnet(net, arch)
    assert net.active_arch == active
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_extracted_weights_are_copies(supernet_of):
    net = supernet_of("tiny")
    sub = extract_subnet(net, get_space("tiny").largest())
    supernet_ptrs = {p.data_ptr() for p in net.parameters()}
    assert not any(p.data_ptr() in supernet_ptrs for p in sub.parameters())


def test_extract_refuses_an_arch_of_another_space(supernet_of):
    from ofakit.errors import ArchError

    with pytest.raises(ArchError, match="arch is for space 'ofa-mbv3-w1.0', not 'tiny'"):
        extract_subnet(supernet_of("tiny"), get_space("ofa-mbv3-w1.0").largest())

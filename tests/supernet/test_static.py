"""Static-net helpers and the training-time shortcuts of the supernet blocks (in-place activations, SE as matmuls)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ofakit.space import get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.supernet.static import fold_batchnorm


@pytest.mark.parametrize("name", ["tiny", "ofa-mbv3-cifar", "proxyless-mobile"])
def test_folding_batchnorm_keeps_the_function(name, supernet_of):
    space = get_space(name)
    net = extract_subnet(supernet_of(name), space.largest()).eval()
    x = torch.randn(4, 3, space.resolutions[-1], space.resolutions[-1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net(x)
        folded = fold_batchnorm(net)
        got = folded(x)
    assert not any(type(m) is nn.BatchNorm2d for m in folded.modules())
    assert not torch.equal(got, torch.zeros_like(got))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_folding_leaves_a_batchnorm_that_follows_no_conv():
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1)).eval()
    fold_batchnorm(seq)
    assert type(seq[0]) is nn.BatchNorm2d and type(seq[1]) is nn.Conv2d


def test_training_gradients_equal_those_of_out_of_place_activations():
    """The supernet's in-place activations and matmul squeeze-excite give the gradients of the plain formulation
    (the extracted static net, built from out-of-place activations and 1x1 convs) for the largest subnet."""
    space = get_space("ofa-mbv3-cifar")
    torch.manual_seed(0)
    supernet = build_supernet(space).train()
    arch = space.largest()
    supernet.set_active(arch)
    static = extract_subnet(supernet, arch).train()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    supernet(x).square().sum().backward()
    static(x).square().sum().backward()
    got = supernet.blocks[0].dw_conv.weight.grad
    ref = static.features[4].depthwise[0].weight.grad  # stem conv, BN, act, first block, then blocks[0]
    k = ref.shape[-1]
    assert got is not None and ref.abs().max() > 0
    torch.testing.assert_close(got[: ref.shape[0], :, :k, :k], ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    se_got = supernet.blocks[-1].se.reduce.weight.grad
    se_ref = static.features[-4].depthwise[3].reduce.weight.grad
    assert se_got is not None and se_ref.abs().max() > 0
    torch.testing.assert_close(se_got[: se_ref.shape[0], : se_ref.shape[1]], se_ref, rtol=1e-4,
                               atol=1e-5 * se_ref.abs().max().item())


def test_training_squeeze_excite_matches_its_eval_arithmetic_on_a_narrow_subnet():
    """The matmul path (training) and the conv path (eval) of the elastic SE compute the same function on sliced
    weights, in both memory formats."""
    from ofakit.supernet.blocks import DynamicSE

    torch.manual_seed(0)
    se = DynamicSE(96)
    for memory in (torch.contiguous_format, torch.channels_last):
        se = se.to(memory_format=memory)
        x = torch.randn(4, 40, 6, 6).contiguous(memory_format=memory)
        want = se.eval()(x)
        got = se.train()(x)
        assert not torch.equal(want, x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

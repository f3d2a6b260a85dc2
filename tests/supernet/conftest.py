"""Shared fixtures for supernet tests: supernets with non-trivial batch-norm statistics, built once per space."""
from __future__ import annotations

import functools

import pytest
import torch

from ofakit.supernet import build_supernet


def _randomize_bn(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN layer random affine parameters and running statistics, so that BN is not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return net


@functools.lru_cache(maxsize=2)
def _cached_supernet(space: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(build_supernet(space)).eval()


@pytest.fixture
def randomize_bn():
    return _randomize_bn


@pytest.fixture
def supernet_of():
    """supernet_of(space) -> a shared, eval-mode supernet with random BN statistics (do not modify it)."""
    return _cached_supernet


def input_size(space) -> int:
    """A small input that still leaves >= 1 pixel after every stride of the space."""
    return 32 if space.name in ("tiny", "ofa-mbv3-cifar") else 48

"""Shared setup for export tests: supernets with non-trivial BN statistics (built once per space), small inputs,
subnets whose activations keep their scale, and a tiny bundle on disk."""
from __future__ import annotations

import dataclasses
import functools
import random
import warnings

import pytest
import torch

from ofakit.arch import ArchConfig
from ofakit.bundle import save_bundle
from ofakit.space import get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.supernet.calibrate import recalibrate_bn


def _input_size(space: str) -> int:
    """A small input that leaves >= 1 pixel after every stride (32 for the 32-px spaces, 48 for the ImageNet ones)."""
    return 32 if space in ("tiny", "ofa-mbv3-cifar") else 48


def _small_archs(space: str, n: int, *, seed: int = 0) -> list[ArchConfig]:
    """Largest, smallest and n-2 random archs of `space`, at the small input size."""
    sp = get_space(space)
    rng = random.Random(seed)
    archs = [sp.largest(), sp.smallest()] + [sp.sample(rng) for _ in range(n - 2)]
    return [dataclasses.replace(a, resolution=_input_size(space)) for a in archs]


@functools.lru_cache(maxsize=1)
def _supernet(space: str) -> torch.nn.Module:
    """An eval-mode supernet whose BN layers have random affine parameters (so BN is not the identity)."""
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
    return net


def _subnet(arch: ArchConfig) -> torch.nn.Module:
    """The extracted subnet with BN statistics recalibrated on random inputs, so its logits depend on the input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small test resolution is outside the ImageNet spaces' search range
        net = extract_subnet(_supernet(arch.space), arch)
    gen = torch.Generator().manual_seed(1)
    recalibrate_bn(net, [torch.randn(16, 3, arch.resolution, arch.resolution, generator=gen)])
    return net.eval()


@pytest.fixture
def tiny_bundle(tmp_path_factory):
    """A bundle of a freshly initialised tiny supernet that says it was trained on digits."""
    path = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    save_bundle(path, build_supernet("tiny"), dataset="digits")
    return path


@pytest.fixture
def small_archs():
    """small_archs(space, n) -> largest, smallest and n-2 random archs at a small input size (32 or 48 px)."""
    return _small_archs


@pytest.fixture
def make_subnet():
    """make_subnet(arch) -> an eval-mode subnet of a shared supernet (random BN affine, BN recalibrated on noise)."""
    return _subnet

"""Standalone layer models: each layer of every space builds alone and gives the output shape its LayerShape says."""
from __future__ import annotations

import random

import pytest

from ofakit.space import SPACES, get_space

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("space", SPACES.names())
def test_layer_models_match_their_shapes(space):
    from ofakit.latency.build import input_shape, layer_module

    sp = get_space(space)
    arch = sp.sample(random.Random(0))
    arch = type(arch).from_dict({**arch.to_dict(), "resolution": min(sp.resolutions)})
    with torch.no_grad():
        for layer in sp.layers(arch):
            y = layer_module(layer)(torch.randn(input_shape(layer, batch=2)))
            h, w, c = layer.output
            assert tuple(y.shape) == ((2, c) if layer.op == "classifier" else (2, c, h, w)), layer


def test_layers_are_made_of_the_extracted_subnets_blocks():
    from ofakit.latency.build import layer_module
    from ofakit.supernet.static import InvertedResidual, SqueezeExcite

    sp = get_space("tiny")
    layers = sp.layers(sp.largest())
    block = layer_module(next(x for x in layers if x.op == "mbconv" and x.se))
    assert isinstance(block, InvertedResidual) and not block.training
    assert any(isinstance(m, SqueezeExcite) for m in block.modules())

"""ONNX export: checker-clean, opset >= 17, constant-folded graphs that ONNX Runtime runs as PyTorch does (max abs
diff <= 1e-4 in fp32, or twice PyTorch's own fp32 error) for archs of every space, with a fixed or a dynamic batch."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch

from ofakit.export.formats import ArtifactSpec
from ofakit.export.onnx import export_onnx, load_onnx
from ofakit.export.verify import FP32_ATOL, compare, random_inputs, torch_predict
from ofakit.space import SPACES

# largest, smallest and 4 random archs a space, which hold every kernel size, expand ratio, width and depth of it
# (checked below): each export takes ~10 s on 2 cores (torch.export, then onnxscript's optimizer)
N_ARCHS = 6


@pytest.mark.parametrize("space", SPACES.names())
def test_the_archs_exported_hold_every_value_of_their_space(space, small_archs):
    def values(archs):
        return {f.name: {v for a in archs for v in getattr(a, f.name)}
                for f in dataclasses.fields(archs[0]) if isinstance(getattr(archs[0], f.name), tuple)}

    exported = values(small_archs(space, N_ARCHS))
    assert exported == values(small_archs(space, 300, seed=1))
    assert any(exported.values())


@pytest.mark.slow
@pytest.mark.parametrize("index", range(N_ARCHS))
@pytest.mark.parametrize("space", SPACES.names())
def test_onnx_matches_pytorch(space, index, tmp_path, small_archs, make_subnet, record_property):
    arch = small_archs(space, N_ARCHS)[index]
    model = make_subnet(arch)
    spec = ArtifactSpec(resolution=arch.resolution, batch=2)
    facts = export_onnx(model, tmp_path / "m.onnx", spec)
    assert facts["opset"] >= 17
    parity = compare(torch_predict(model), load_onnx(tmp_path / "m.onnx", spec).predict, random_inputs(spec),
                     precision="fp32", runtime="onnxruntime", exact=torch_predict(model, float64=True))
    for key in ("max_abs_diff", "mean_abs_diff", "output_scale", "pytorch_fp32_error"):
        record_property(key, getattr(parity, key))
    # within 1e-4, or (deep ResNets) within twice the error PyTorch itself makes in fp32
    assert parity.max_abs_diff <= max(FP32_ATOL, 2 * parity.pytorch_fp32_error), parity
    assert parity.passed and parity.top1_agreement == 1.0
    # the logits depend on the input, so the comparison is not between constants
    x = random_inputs(spec)[0]
    logits = torch_predict(model)(x)
    assert np.abs(logits[0] - logits[1]).max() > 1e-3


def test_dynamic_batch_runs_at_any_batch_size(tmp_path, small_archs, make_subnet):
    arch = small_archs("tiny", 3)[2]
    model = make_subnet(arch)
    spec = ArtifactSpec(resolution=arch.resolution, batch=None)
    export_onnx(model, tmp_path / "m.onnx", spec)
    graph = onnx.load(str(tmp_path / "m.onnx"))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, symbolic batch dimension
    predict = load_onnx(tmp_path / "m.onnx", spec).predict
    for n in (1, 3, 5):
        x = torch.randn(n, 3, arch.resolution, arch.resolution).numpy()
        got = predict(x)
        assert got.shape == (n, 10)
        assert np.abs(got - torch_predict(model)(x)).max() <= FP32_ATOL


def test_graph_is_checked_folded_and_small(tmp_path, small_archs, make_subnet):
    arch = small_archs("ofa-mbv3-cifar", 1)[0]
    spec = ArtifactSpec(resolution=arch.resolution, batch=1)
    facts = export_onnx(make_subnet(arch), tmp_path / "m.onnx", spec)
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    ops = facts["operators"]
    # batch norms folded into the convolutions, no Identity or Constant nodes left behind
    assert not {"BatchNormalization", "Identity", "Constant", "Dropout"} & set(ops), ops
    assert set(ops) <= {"Conv", "Relu", "HardSwish", "HardSigmoid", "Add", "Mul", "ReduceMean", "Reshape", "Gemm",
                        "Flatten", "GlobalAveragePool"}, ops
    assert (tmp_path / "m.onnx").stat().st_size < 1.2 * 4 * sum(p.numel() for p in make_subnet(arch).parameters())


def test_opset_below_17_is_refused(tmp_path, small_archs, make_subnet):
    arch = small_archs("tiny", 1)[0]
    with pytest.raises(ValueError, match="opset 16 is below 17"):
        export_onnx(make_subnet(arch), tmp_path / "m.onnx", ArtifactSpec(resolution=arch.resolution, opset=16))

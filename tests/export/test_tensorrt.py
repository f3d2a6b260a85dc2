"""TensorRT: a clear error where TensorRT or a GPU is missing; engines that match PyTorch where both are present.

The engine tests run only on a machine with TensorRT 10 and a CUDA GPU; elsewhere they skip with the reason.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

from ofakit.export.formats import ArtifactSpec, MissingRuntimeError
from ofakit.export.tensorrt import _rebatch, build_engine, load_engine, require
from ofakit.export.verify import compare, random_inputs, torch_predict

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def needs_tensorrt(test):  # noqa: ANN001, ANN201 - a decorator
    """Mark a test as needing TensorRT and a CUDA GPU, and skip it with the reason where either is missing."""
    for mark in (pytest.mark.tensorrt, pytest.mark.cuda,
                 pytest.mark.skipif(not HAVE_TENSORRT,
                                    reason="TensorRT is not installed (NVIDIA's libraries are not on PyPI)"),
                 pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")):
        test = mark(test)
    return test


@pytest.mark.skipif(HAVE_TENSORRT and torch.cuda.is_available(), reason="TensorRT and a GPU are present")
def test_missing_runtime_is_a_clear_error():
    expected = "TensorRT export needs the tensorrt Python package" if not HAVE_TENSORRT else "needs a CUDA GPU"
    with pytest.raises(MissingRuntimeError, match=expected):
        require("fp32")


def test_calibration_images_are_rebatched_to_the_engine_batch():
    batches = [torch.zeros(5, 3, 4, 4), torch.ones(4, 3, 4, 4)]
    rebatched = _rebatch(batches, 4)
    assert [len(b) for b in rebatched] == [4, 4]  # 9 images: the ninth does not fill a batch
    assert _rebatch([], 4) == []


@needs_tensorrt
@pytest.mark.parametrize(("precision", "batch"), [("fp32", 2), ("fp32", None), ("fp16", 2)])
def test_engine_matches_pytorch(precision, batch, tmp_path, small_archs, make_subnet):
    require(precision)
    arch = small_archs("tiny", 3)[2]
    model = make_subnet(arch)
    spec = ArtifactSpec(resolution=arch.resolution, batch=batch, precision=precision, max_batch=8)
    build_engine(model, tmp_path / "m.engine", spec, [])
    parity = compare(torch_predict(model, "cuda"), load_engine(tmp_path / "m.engine", spec).predict,
                     random_inputs(spec), precision=precision, runtime="TensorRT")
    assert parity.passed, parity


@needs_tensorrt
@pytest.mark.parametrize("batch", [2, None])
def test_int8_engine_calibrates_and_runs(batch, tmp_path, small_archs, make_subnet):
    require("int8")
    arch = small_archs("tiny", 3)[2]
    model = make_subnet(arch)
    spec = ArtifactSpec(resolution=arch.resolution, batch=batch, precision="int8", max_batch=8)
    calibration = [torch.randn(16, 3, arch.resolution, arch.resolution) for _ in range(4)]
    facts = build_engine(model, tmp_path / "m.engine", spec, calibration)
    assert facts["int8_calibration"]["images"] == 64
    parity = compare(torch_predict(model, "cuda"), load_engine(tmp_path / "m.engine", spec).predict,
                     random_inputs(spec), precision="int8", runtime="TensorRT")
    assert parity.top1_agreement >= 0.5, parity

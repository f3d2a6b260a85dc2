"""The export pipeline and its manifest: what is written next to the artifact, and that failures write nothing."""
from __future__ import annotations

import hashlib
import json
import random

import pytest

from ofakit.bundle import WEIGHTS, save_bundle
from ofakit.errors import ArchError
from ofakit.export import ExportConfig, ExportError, export_subnet, manifest_path
from ofakit.space import get_space
from ofakit.supernet import build_supernet


@pytest.fixture
def arch():
    return get_space("tiny").sample(random.Random(4))


def test_manifest_with_data(tiny_bundle, arch, tmp_path):
    out = tmp_path / "out" / "model.onnx"
    lines = []
    result = export_subnet(tiny_bundle, arch, out, ExportConfig(batch=None), data="digits", log=lines.append)
    assert result.artifact == out and out.is_file()
    assert result.manifest == manifest_path(out) == tmp_path / "out" / "model.onnx.json"
    manifest = json.loads(result.manifest.read_text())
    assert manifest == result.data
    assert manifest["format"] == "onnx" and manifest["artifact"] == "model.onnx" and manifest["precision"] == "fp32"
    assert manifest["artifact_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["arch"] == arch.to_dict()
    assert manifest["macs"] == get_space("tiny").macs(arch) and manifest["params"] == get_space("tiny").params(arch)
    bundle = manifest["bundle"]
    assert bundle["space"] == "tiny" and bundle["num_classes"] == 10 and bundle["dataset"] == "digits"
    assert bundle["weights_sha256"] == hashlib.sha256((tiny_bundle / WEIGHTS).read_bytes()).hexdigest()
    assert manifest["input"]["shape"] == ["batch", 3, arch.resolution, arch.resolution]
    assert manifest["input"]["name"] == "input" and manifest["input"]["layout"] == "NCHW"
    assert manifest["output"] == {"name": "logits", "shape": ["batch", 10], "dtype": "float32",
                                  "meaning": "class logits (apply softmax for probabilities)"}
    assert manifest["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "source": "data 'digits'"}
    assert manifest["classes"] == [str(i) for i in range(10)]
    assert manifest["bn_recalibration"] == {"data": "digits", "split": "train", "images": 1437}
    parity = manifest["parity"]
    assert parity["compared"] and parity["passed"] and parity["runtime"] == "ONNX Runtime (CPU)"
    assert parity["max_abs_diff"] <= parity["tolerance"] == 1e-4
    assert 0 <= parity["pytorch_fp32_error"] < 1e-5
    assert parity["batch_sizes"] == [1, 3, 4] and parity["random_inputs"] == 8
    assert parity["images"]["source"] == "digits" and parity["images"]["images"] == 360  # all: a dynamic batch
    assert parity["images"]["top1_agreement"] == 1.0
    assert 0 <= parity["images"]["pytorch_top1"] <= 1
    assert manifest["export"]["opset"] >= 17 and manifest["export"]["constant_folded"]
    versions = manifest["runtime_versions"]
    assert {"ofakit", "python", "platform", "onnx", "onnxruntime", "onnxscript"} <= set(versions)
    assert any("recalibrated BN statistics on 1437 training images of digits" in line for line in lines)


def test_manifest_without_data_falls_back_to_the_bundle_dataset(tiny_bundle, arch, tmp_path):
    lines = []
    result = export_subnet(tiny_bundle, arch, tmp_path / "m.pt2", ExportConfig(format="torchscript"),
                           log=lines.append)
    manifest = result.data
    assert manifest["format"] == "torch-export" and manifest["input"]["shape"] == [1, 3, arch.resolution,
                                                                                   arch.resolution]
    assert manifest["normalization"]["source"] == "bundle dataset 'digits'"
    assert manifest["classes"] == [str(i) for i in range(10)]
    assert manifest["bn_recalibration"] is None and manifest["parity"]["images"] is None
    assert any("recalibrating them on a few thousand training images is recommended" in line for line in lines)


def test_unknown_dataset_leaves_normalization_and_classes_null(arch, tmp_path):
    save_bundle(tmp_path / "b", build_supernet("tiny"), dataset="")
    manifest = export_subnet(tmp_path / "b", arch, tmp_path / "m.onnx").data
    assert manifest["normalization"] is None and manifest["classes"] is None


def test_a_failed_parity_check_writes_nothing(tiny_bundle, arch, tmp_path, monkeypatch):
    monkeypatch.setattr("ofakit.export.verify.tolerance", lambda *args: -1.0)  # nothing can pass
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old")
    with pytest.raises(ExportError, match="does not match PyTorch: .*; nothing was written"):
        export_subnet(tiny_bundle, arch, out / "model.onnx", ExportConfig(force=True))
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"old"


def test_force_replaces_an_existing_artifact(tiny_bundle, arch, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    with pytest.raises(ExportError, match="already exists; pass --force to replace it"):
        export_subnet(tiny_bundle, arch, out)
    export_subnet(tiny_bundle, arch, out, ExportConfig(force=True))
    assert out.read_bytes()[:4] != b"old" and manifest_path(out).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]


def test_arch_of_another_space_is_refused(tiny_bundle, tmp_path):
    other = get_space("ofa-mbv3-cifar").largest()
    with pytest.raises(ArchError, match="arch is for space 'ofa-mbv3-cifar', but bundle .* holds a supernet of "
                                        "space 'tiny'"):
        export_subnet(tiny_bundle, other, tmp_path / "m.onnx")
    assert not list(tmp_path.glob("m.onnx*"))


def test_int8_needs_calibration_images(tiny_bundle, arch, tmp_path):
    with pytest.raises(ExportError, match="an int8 engine needs calibration images"):
        export_subnet(tiny_bundle, arch, tmp_path / "m.engine", ExportConfig(format="tensorrt", precision="int8"))

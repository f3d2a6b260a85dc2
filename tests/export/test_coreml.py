"""Core ML: a tiny-space subnet converts to an ML Program whose spec loads (everywhere), and predicts as PyTorch does
(macOS only)."""
from __future__ import annotations

import sys

import pytest

from ofakit.export.coreml import check_spec, export_coreml, load_coreml
from ofakit.export.formats import ArtifactSpec
from ofakit.export.verify import compare, random_inputs, torch_predict

pytest.importorskip("coremltools", reason="coremltools is not installed (pip install 'ofakit[coreml]')")


@pytest.mark.parametrize(("precision", "batch"), [("fp16", 1), ("fp32", None)], ids=["fp16-batch1", "fp32-dynamic"])
def test_tiny_subnet_converts_to_an_ml_program(precision, batch, tmp_path, small_archs, make_subnet):
    arch = small_archs("tiny", 3)[2]
    spec = ArtifactSpec(resolution=arch.resolution, batch=batch, precision=precision, max_batch=16)
    facts = export_coreml(make_subnet(arch), tmp_path / "m.mlpackage", spec)
    assert facts["model_type"] == "mlProgram" and facts["compute_precision"] == precision
    assert (tmp_path / "m.mlpackage" / "Manifest.json").is_file()
    checked = check_spec(tmp_path / "m.mlpackage", spec)
    assert "mlProgram" in checked and ("1-16" in checked if batch is None else "[1, 3, 32, 32]" in checked)


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML predicts; see test_predictions_match_pytorch")
def test_off_macos_outputs_are_not_compared(tmp_path, small_archs, make_subnet):
    arch = small_archs("tiny", 1)[0]
    spec = ArtifactSpec(resolution=arch.resolution, precision="fp16")
    export_coreml(make_subnet(arch), tmp_path / "m.mlpackage", spec)
    loaded = load_coreml(tmp_path / "m.mlpackage", spec)
    assert loaded.predict is None
    assert loaded.note.startswith("outputs not compared: Core ML predicts only on macOS; package spec loaded")


@pytest.mark.coreml_predict
@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predicts only on macOS")
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_predictions_match_pytorch(precision, tmp_path, small_archs, make_subnet):
    arch = small_archs("tiny", 3)[2]
    model = make_subnet(arch)
    spec = ArtifactSpec(resolution=arch.resolution, batch=2, precision=precision)
    export_coreml(model, tmp_path / "m.mlpackage", spec)
    parity = compare(torch_predict(model), load_coreml(tmp_path / "m.mlpackage", spec).predict, random_inputs(spec),
                     precision=precision, runtime="Core ML")
    assert parity.passed, parity

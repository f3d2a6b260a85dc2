"""The format registry: names, aliases, close matches, precisions and artifact endings."""
from __future__ import annotations

from pathlib import Path

import pytest

from ofakit.errors import UnknownNameError
from ofakit.export import FORMATS, ExportError


def test_every_format_is_registered():
    assert FORMATS.names() == ["coreml", "onnx", "tensorrt", "torch-export"]
    assert FORMATS.get("torchscript").name == "torch-export"
    assert FORMATS.get("trt").name == "tensorrt"


def test_unknown_format_names_the_close_match():
    with pytest.raises(UnknownNameError, match=r"unknown export format 'onxx'; known: coreml, onnx, tensorrt, "
                                               r"torch-export\. Did you mean 'onnx'\?"):
        FORMATS.get("onxx")
    with pytest.raises(UnknownNameError, match="Did you mean 'torch-export'"):
        FORMATS.get("torchscrpt")


@pytest.mark.parametrize(("name", "default"), [("onnx", "fp32"), ("coreml", "fp16"), ("tensorrt", "fp32"),
                                               ("torch-export", "fp32")])
def test_default_precision(name, default):
    assert FORMATS.get(name).check_precision(None) == default


@pytest.mark.parametrize(("name", "precision", "allowed"), [("onnx", "fp16", "fp32"), ("coreml", "int8", "fp16, fp32"),
                                                            ("torch-export", "int8", "fp32")])
def test_precision_a_format_cannot_build(name, precision, allowed):
    with pytest.raises(ExportError, match=f"precision '{precision}' is not available for format '{name}' "
                                          rf"\(choices: {allowed}\)"):
        FORMATS.get(name).check_precision(precision)


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("onnx", "m.onnx", "m.onnx.tmp"), ("coreml", "m.mlpackage", "m.mlmodel"), ("tensorrt", "m.plan", "m.onnx"),
    ("torch-export", "m.pt2", "m.pt"),
])
def test_artifact_endings(name, good, bad):
    fmt = FORMATS.get(name)
    fmt.check_suffix(Path(good))
    with pytest.raises(ExportError, match=f"does not end in {fmt.suffixes[0]}"):
        fmt.check_suffix(Path(bad))


def test_importing_the_formats_loads_no_runtime():
    import subprocess
    import sys

    code = ("import sys, ofakit.export; "
            "loaded = [m for m in ('torch', 'onnx', 'onnxruntime', 'coremltools', 'tensorrt') if m in sys.modules]; "
            "assert not loaded, loaded")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

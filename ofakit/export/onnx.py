"""ONNX export through torch's `torch.export`-based exporter, checked with `onnx.checker` and run with ONNX Runtime.

The exporter (`torch.onnx.export(..., dynamo=True)`, the default since torch 2.9; the TorchScript-based one is
deprecated) traces the subnet with `torch.export`, and onnxscript's optimizer folds constants and batch norms into
the convolutions, leaving a graph of Conv, activations, Add, Mul, ReduceMean, Reshape and Gemm.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.export.formats import (
    FORMATS, INPUT_NAME, OUTPUT_NAME, ArtifactSpec, ExportFormat, Loaded, MissingRuntimeError,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

MIN_OPSET = 17


def require(precision: str) -> dict[str, str]:
    """Versions of the ONNX tools; raises MissingRuntimeError when one is missing."""
    versions = {}
    for module, package in (("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("onnxscript", "onnxscript")):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            raise MissingRuntimeError(f"ONNX export needs {package}, which is not installed; "
                                      f"install it with: pip install {package}") from None
    return versions


def export_onnx(model: nn.Module, path: Path, spec: ArtifactSpec) -> dict[str, Any]:
    """Write `model` (eval mode, fp32, CPU) as an ONNX file with input "input" and output "logits".

    Returns facts for the manifest (exporter, opset, operator counts).
    """
    import onnx
    import torch

    if spec.opset < MIN_OPSET:
        raise ValueError(f"ONNX opset {spec.opset} is below {MIN_OPSET}")
    example = torch.randn(spec.batch or 2, 3, spec.resolution, spec.resolution)
    dynamic = None if spec.batch else ({0: torch.export.Dim("batch", min=1)},)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=spec.opset, optimize=True,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic,
                                    verbose=False)
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    return {"exporter": f"torch.onnx (torch.export-based), torch {torch.__version__}", "opset": opset,
            "constant_folded": True, "checker": "onnx.checker full_check passed",
            "operators": dict(sorted(Counter(n.op_type for n in graph.graph.node).items()))}


def load_onnx(path: Path, spec: ArtifactSpec) -> Loaded:
    """An ONNX Runtime CPU session for the file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(x):  # noqa: ANN001, ANN202 - numpy in, numpy out
        return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    return Loaded(predict)


def _build(model: nn.Module, path: Path, spec: ArtifactSpec, calibration: Sequence[torch.Tensor]) -> dict[str, Any]:
    return export_onnx(model, path, spec)


FORMATS.add("onnx", ExportFormat(
    name="onnx", suffixes=(".onnx",), precisions=("fp32",), runtime="ONNX Runtime (CPU)", device="cpu",
    require=require, build=_build, load=load_onnx,
))

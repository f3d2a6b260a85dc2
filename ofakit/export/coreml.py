"""Core ML export: an ML Program (`.mlpackage`) converted by coremltools from a `torch.export` program.

Weights and compute are fp16 by default (what the Neural Engine runs), fp32 on request; the input and output stay
float32 arrays. Core ML runs only on Apple platforms: on macOS the package is loaded and its predictions compared
with PyTorch; elsewhere the package's spec is loaded and checked, and the manifest says that outputs were not compared.
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.export.formats import (
    FORMATS, INPUT_NAME, OUTPUT_NAME, ArtifactSpec, ExportError, ExportFormat, Loaded, MissingRuntimeError,
)

if TYPE_CHECKING:
    import torch
    from torch import nn


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the CLI's stderr clean: coremltools logs version notes on import and draws progress bars."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


def _coremltools():  # noqa: ANN202 - the module
    try:
        with _quiet():
            import coremltools
    except ImportError:
        raise MissingRuntimeError("Core ML export needs coremltools, which is not installed; "
                                  "install it with: pip install 'ofakit[coreml]'") from None
    return coremltools


def require(precision: str) -> dict[str, str]:
    import torch

    return {"coremltools": _coremltools().__version__, "torch": torch.__version__}


def export_coreml(model: nn.Module, path: Path, spec: ArtifactSpec) -> dict[str, Any]:
    """Convert `model` to an ML Program package at `path` (a directory ending in .mlpackage)."""
    import numpy as np
    import torch

    ct = _coremltools()
    example = torch.randn(spec.batch or 2, 3, spec.resolution, spec.resolution)
    if spec.batch:
        shape = (spec.batch, 3, spec.resolution, spec.resolution)
        dynamic = None
    else:
        shape = ct.Shape((ct.RangeDim(1, spec.max_batch, default=1), 3, spec.resolution, spec.resolution))
        dynamic = ({0: torch.export.Dim("batch", min=1, max=spec.max_batch)},)
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic).run_decompositions({})
    precision = ct.precision.FLOAT16 if spec.precision == "fp16" else ct.precision.FLOAT32
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coremltools' notes on its own deprecated internals
        mlmodel = ct.convert(program, inputs=[ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)],
                             outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)], convert_to="mlprogram",
                             compute_precision=precision, minimum_deployment_target=ct.target.iOS16)
    mlmodel.save(str(path))
    return {"converter": f"coremltools {ct.__version__} from torch.export, torch {torch.__version__}",
            "model_type": "mlProgram", "minimum_deployment_target": "iOS16 / macOS13",
            "compute_precision": spec.precision}


def check_spec(path: Path, spec: ArtifactSpec) -> str:
    """Load the package's spec and check its type, input and output; returns what was checked."""
    ct = _coremltools()
    with _quiet():
        model_spec = ct.utils.load_spec(str(path))
    kind = model_spec.WhichOneof("Type")
    inputs = [i.name for i in model_spec.description.input]
    outputs = [o.name for o in model_spec.description.output]
    if kind != "mlProgram" or inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(f"{path}: expected an mlProgram with input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, "
                          f"got {kind} with inputs {inputs} and outputs {outputs}")
    array = model_spec.description.input[0].type.multiArrayType
    dims = list(array.shape)
    if array.shapeRange.sizeRanges:
        batch = array.shapeRange.sizeRanges[0]
        dims[0] = f"{batch.lowerBound}-{batch.upperBound}"
    expected = [spec.batch or f"1-{spec.max_batch}", 3, spec.resolution, spec.resolution]
    if dims != expected:
        raise ExportError(f"{path}: input shape {dims} does not match {expected}")
    return (f"package spec loaded and checked (mlProgram, spec version {model_spec.specificationVersion}, "
            f"input {INPUT_NAME} {dims}, output {OUTPUT_NAME})")


def load_coreml(path: Path, spec: ArtifactSpec) -> Loaded:
    """On macOS a model that predicts; elsewhere a spec check and a note that outputs were not compared."""
    checked = check_spec(path, spec)
    if sys.platform != "darwin":
        return Loaded(None, f"outputs not compared: Core ML predicts only on macOS; {checked}")
    ct = _coremltools()
    model = ct.models.MLModel(str(path))

    def predict(x):  # noqa: ANN001, ANN202 - numpy in, numpy out
        return model.predict({INPUT_NAME: x})[OUTPUT_NAME]

    return Loaded(predict, checked)


def _build(model: nn.Module, path: Path, spec: ArtifactSpec, calibration: Sequence[torch.Tensor]) -> dict[str, Any]:
    return export_coreml(model, path, spec)


FORMATS.add("coreml", ExportFormat(
    name="coreml", suffixes=(".mlpackage",), precisions=("fp16", "fp32"), runtime="Core ML (macOS)", device="cpu",
    require=require, build=_build, load=load_coreml,
))

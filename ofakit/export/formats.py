"""The registry of export formats, what each one needs, and the errors an export can raise.

A format is a small table of functions (`require`, `build`, `load`) filled by its module (`onnx.py`, `coreml.py`,
`tensorrt.py`, `torchscript.py`); none of them imports its runtime before it is called, so `import ofakit` and
`ofakit --help` work without torch, coremltools or TensorRT.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.errors import OfakitError
from ofakit.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ExportError(OfakitError, RuntimeError):
    """An artifact that could not be built or that does not give PyTorch's outputs."""


class MissingRuntimeError(ExportError):
    """A runtime (coremltools, TensorRT, a CUDA GPU) that the format needs and this machine lacks."""


@dataclass(frozen=True)
class ArtifactSpec:
    """The shape and numbers of one artifact.

    Attributes:
        resolution: input image side (the arch's resolution).
        batch: fixed batch size, or None for a dynamic batch dimension.
        precision: "fp32", "fp16" or "int8".
        max_batch: upper bound of a dynamic batch where the runtime needs one (Core ML, TensorRT).
        opset: ONNX operator set (ONNX, and the ONNX that TensorRT parses).
    """

    resolution: int
    batch: int | None = 1
    precision: str = "fp32"
    max_batch: int = 64
    opset: int = 18

    def input_shape(self) -> list[int | str]:
        """[N, 3, H, W], with "batch" for a dynamic batch dimension (as written in the manifest)."""
        return [self.batch if self.batch is not None else "batch", 3, self.resolution, self.resolution]


@dataclass(frozen=True)
class Loaded:
    """An artifact loaded back for verification.

    Attributes:
        predict: float32 NCHW array -> logits array, or None when this machine cannot run the artifact.
        note: what was checked instead when `predict` is None (e.g. Core ML on Linux).
    """

    predict: Callable[[np.ndarray], np.ndarray] | None
    note: str = ""


@dataclass(frozen=True)
class ExportFormat:
    """One way to ship a subnet.

    Attributes:
        name: registry name (`--format`).
        suffixes: endings accepted for `--out`; the first is the usual one.
        precisions: the precisions it builds; the first is the default.
        runtime: what runs the artifact for verification, for messages.
        device: where the PyTorch reference runs ("cpu", or "cuda" for TensorRT).
        require: precision -> runtime versions; raises MissingRuntimeError when a runtime is missing.
        build: (model, path, spec, calibration batches) -> export details for the manifest; writes `path`.
        load: (path, spec) -> Loaded.
    """

    name: str
    suffixes: tuple[str, ...]
    precisions: tuple[str, ...]
    runtime: str
    device: str
    require: Callable[[str], dict[str, str]]
    build: Callable[[nn.Module, Path, ArtifactSpec, Sequence[torch.Tensor]], dict[str, Any]]
    load: Callable[[Path, ArtifactSpec], Loaded]

    def check_precision(self, precision: str | None) -> str:
        """The precision to build (the format's default for None); raises ExportError for one it cannot build."""
        if precision is None:
            return self.precisions[0]
        if precision not in self.precisions:
            raise ExportError(f"precision {precision!r} is not available for format {self.name!r} "
                              f"(choices: {', '.join(self.precisions)})")
        return precision

    def check_suffix(self, out: Path) -> None:
        if not out.name.endswith(self.suffixes):
            raise ExportError(f"--out {str(out)!r} does not end in {' or '.join(self.suffixes)}, "
                              f"the ending of {self.name} artifacts")


FORMATS: Registry[ExportFormat] = Registry("export format")

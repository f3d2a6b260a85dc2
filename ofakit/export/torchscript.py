"""PyTorch deployments: a `torch.export` program (`.pt2`), the successor of TorchScript.

`--format torchscript` is kept as an alias because that is what PyTorch deployments used to ask for, but in torch
2.14 `torch.jit.trace`, `script`, `save` and `load` all warn that they are deprecated in favour of `torch.export`, so
the artifact is an ExportedProgram: load it with `torch.export.load(path).module()`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.export.formats import FORMATS, ArtifactSpec, ExportFormat, Loaded

if TYPE_CHECKING:
    import torch
    from torch import nn


def require(precision: str) -> dict[str, str]:
    import torch

    return {"torch": torch.__version__}


def export_program(model: nn.Module, path: Path, spec: ArtifactSpec) -> dict[str, Any]:
    """Write `model` as a torch.export program; a dynamic batch becomes a symbolic dimension."""
    import torch

    example = torch.randn(spec.batch or 2, 3, spec.resolution, spec.resolution)
    dynamic = None if spec.batch else ({0: torch.export.Dim("batch", min=1)},)
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    torch.export.save(program, str(path))
    return {"exporter": f"torch.export, torch {torch.__version__}",
            "load_with": "torch.export.load(path).module()"}


def load_program(path: Path, spec: ArtifactSpec) -> Loaded:
    import torch

    module = torch.export.load(str(path)).module()

    def predict(x):  # noqa: ANN001, ANN202 - numpy in, numpy out
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return Loaded(predict)


def _build(model: nn.Module, path: Path, spec: ArtifactSpec, calibration: Sequence[torch.Tensor]) -> dict[str, Any]:
    return export_program(model, path, spec)


FORMATS.add("torch-export", ExportFormat(
    name="torch-export", suffixes=(".pt2",), precisions=("fp32",), runtime="torch.export.load", device="cpu",
    require=require, build=_build, load=load_program,
), aliases=("torchscript", "pt2"))

"""Parity of an exported artifact with the PyTorch subnet it came from.

Random inputs (standard normal, the scale of normalised images) go through both; the largest absolute difference of
the logits must stay within the precision's bound: in fp32 1e-4, or twice PyTorch's own fp32 rounding error where that
is larger (a deep net such as a ResNet-50 subnet can differ from its own float64 result by more than 1e-4; the error
is measured on the same inputs against a float64 copy). Real images, when given, add the top-1 agreement between the
two and, when the data's classes are the model's, both accuracies. An int8 artifact has no logit bound: its top-1
agreement with PyTorch on real images must reach INT8_MIN_AGREEMENT.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ofakit.export.formats import ArtifactSpec, ExportError

if TYPE_CHECKING:
    from torch import nn

Predict = Callable[[np.ndarray], np.ndarray]

FP32_ATOL = 1e-4  # largest absolute logit difference allowed in fp32
FP16_RTOL = 5e-2  # in fp16: this fraction of the largest |logit| (at least of 1)
INT8_MIN_AGREEMENT = 0.9  # in int8: the least top-1 agreement with PyTorch on real images


@dataclass
class Parity:
    """How closely an artifact follows PyTorch.

    Attributes:
        runtime: what ran the artifact.
        compared: whether outputs were compared at all (not for Core ML off macOS).
        precision: the artifact's precision.
        random_inputs: random inputs compared, in batches of `batch_sizes`.
        max_abs_diff: largest absolute logit difference.
        mean_abs_diff: mean absolute logit difference.
        output_scale: largest |logit| of PyTorch on those inputs (to judge the differences).
        pytorch_fp32_error: largest |logit| difference of PyTorch in fp32 from PyTorch in fp64 on those inputs.
        tolerance: bound on `max_abs_diff`; None where none applies (int8: see the top-1 agreement).
        top1_agreement: fraction of random inputs whose arg-max class agrees.
        images: real images compared: source, count, top-1 agreement, accuracies.
        note: what was checked instead when outputs were not compared.
    """

    runtime: str
    compared: bool
    precision: str
    random_inputs: int = 0
    batch_sizes: tuple[int, ...] = ()
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    output_scale: float | None = None
    pytorch_fp32_error: float | None = None
    tolerance: float | None = None
    top1_agreement: float | None = None
    images: dict[str, Any] | None = None
    note: str = ""

    @property
    def image_agreement(self) -> float | None:
        """Top-1 agreement on real images; None where none were compared."""
        return self.images.get("top1_agreement") if self.images else None

    @property
    def passed(self) -> bool:
        if not self.compared:
            return True
        if self.precision == "int8":  # no logit bound: the real images' classes must agree
            return self.image_agreement is not None and self.image_agreement >= INT8_MIN_AGREEMENT
        if self.tolerance is None:
            return True
        return self.max_abs_diff is not None and self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        data["passed"] = self.passed
        return data

    def summary(self) -> str:
        """One line for the terminal."""
        if not self.compared:
            return self.note
        if self.tolerance is not None:
            bound = f"bound {self.tolerance:.1e}"
        elif self.precision == "int8":
            bound = f"int8: not bounded; real images must agree on >= {INT8_MIN_AGREEMENT:.0%} of top-1 classes"
        else:
            bound = "not bounded"
        if self.pytorch_fp32_error is not None:
            bound += f"; PyTorch fp32 vs fp64: {self.pytorch_fp32_error:.1e}"
        text = (f"{self.runtime} vs PyTorch on {self.random_inputs} random inputs: max abs diff "
                f"{self.max_abs_diff:.2e} ({bound}), logits up to {self.output_scale:.3g}, "
                f"top-1 agreement {self.top1_agreement:.0%}")
        if self.image_agreement is not None:
            text += f"; {self.images['images']} real images: top-1 agreement {self.image_agreement:.1%}"
        elif self.images:
            text += f"; no real images compared ({self.images.get('note', 'none given')})"
        return text


def tolerance(precision: str, output_scale: float, pytorch_fp32_error: float = 0.0) -> float | None:
    """The bound on the largest absolute logit difference for a precision (None for int8)."""
    if precision == "fp32":
        return max(FP32_ATOL, 2 * pytorch_fp32_error)
    if precision == "fp16":
        return FP16_RTOL * max(1.0, output_scale)
    return None


def random_inputs(spec: ArtifactSpec, *, seed: int = 0, count: int = 8) -> list[np.ndarray]:
    """At least `count` standard-normal NCHW inputs: in at least two batches of the fixed batch size, or in batches
    of 1, 3, 4, ... (none above `spec.max_batch`) for a dynamic batch."""
    rng = np.random.default_rng(seed)
    if spec.batch:
        sizes = [spec.batch] * max(2, -(-count // spec.batch))
    else:
        sizes = []
        while sum(sizes) < count or len(sizes) < 2:
            sizes.append(min((1, 3)[len(sizes)] if len(sizes) < 2 else 4, spec.max_batch))
    return [rng.standard_normal((n, 3, spec.resolution, spec.resolution), dtype=np.float32) for n in sizes]


def torch_predict(model: nn.Module, device: str = "cpu", *, float64: bool = False) -> Predict:
    """`model` (moved to `device`, eval mode) as a numpy -> numpy function; `float64` runs a double-precision copy."""
    import copy

    import torch

    dtype = torch.float64 if float64 else torch.float32
    model = (copy.deepcopy(model).double() if float64 else model).to(device).eval()

    def predict(x: np.ndarray) -> np.ndarray:
        # on Ampere and newer GPUs cuDNN runs fp32 convolutions in TF32 unless told not to
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            return model(torch.from_numpy(x).to(device, dtype)).cpu().numpy()

    return predict


def compare(reference: Predict, candidate: Predict, batches: Sequence[np.ndarray], *, precision: str, runtime: str,
            exact: Predict | None = None) -> Parity:
    """Run both on `batches` and measure how far the candidate's logits are from the reference's.

    Args:
        exact: the reference in float64 (`torch_predict(model, float64=True)`), to measure PyTorch's own fp32 error.
    """
    diffs, agree, scale, own_error = [], [], 0.0, 0.0
    for x in batches:
        expected = np.asarray(reference(x), dtype=np.float64)
        got = np.asarray(candidate(x), dtype=np.float64)
        if got.shape != expected.shape:
            raise ExportError(f"{runtime} returned logits of shape {got.shape}; PyTorch gives {expected.shape}")
        diffs.append(np.abs(got - expected).ravel())
        agree.append(got.argmax(1) == expected.argmax(1))
        scale = max(scale, float(np.abs(expected).max()))
        if exact is not None:
            own_error = max(own_error, float(np.abs(np.asarray(exact(x), dtype=np.float64) - expected).max()))
    diff = np.concatenate(diffs)
    return Parity(runtime=runtime, compared=True, precision=precision, random_inputs=sum(len(x) for x in batches),
                  batch_sizes=tuple(len(x) for x in batches), max_abs_diff=float(diff.max()),
                  mean_abs_diff=float(diff.mean()), output_scale=scale,
                  pytorch_fp32_error=own_error if exact is not None else None,
                  tolerance=tolerance(precision, scale, own_error), top1_agreement=float(np.concatenate(agree).mean()))


def compare_images(reference: Predict, candidate: Predict, batches: Iterable[tuple[Any, Any]], *, source: str,
                   labels_are_classes: bool) -> dict[str, Any]:
    """Top-1 agreement on real images (and both accuracies when the labels are the model's classes).

    Args:
        batches: (images, labels) pairs, as `ofakit.train.data.iterate_batches` yields them.
        labels_are_classes: whether the data's labels index the model's classes.
    """
    ref_top, got_top, labels = [], [], []
    for images, y in batches:
        x = images.cpu().numpy() if hasattr(images, "cpu") else np.asarray(images)
        ref_top.append(reference(x).argmax(1))
        got_top.append(np.asarray(candidate(x)).argmax(1))
        labels.append(y.cpu().numpy() if hasattr(y, "cpu") else np.asarray(y))
    if not ref_top:
        return {"source": source, "images": 0, "top1_agreement": None, "note": "no validation images"}
    ref, got, truth = np.concatenate(ref_top), np.concatenate(got_top), np.concatenate(labels)
    result: dict[str, Any] = {"source": source, "split": "val", "images": int(len(ref)),
                              "top1_agreement": float((ref == got).mean())}
    if labels_are_classes:
        result["pytorch_top1"] = float((ref == truth).mean())
        result["artifact_top1"] = float((got == truth).mean())
    return result


def not_compared(runtime: str, precision: str, note: str) -> Parity:
    return Parity(runtime=runtime, compared=False, precision=precision, note=note)


def check(parity: Parity) -> None:
    """Raise ExportError when the artifact's outputs are outside the bound."""
    if not parity.passed:
        raise ExportError(f"the artifact does not match PyTorch: {parity.summary()}; nothing was written")

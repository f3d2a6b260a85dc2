"""The JSON manifest written next to every artifact (`model.onnx` -> `model.onnx.json`).

It says what the artifact is (arch, bundle and the hash of its weights), how to feed it (input shape, layout,
normalization, class names), how closely it follows PyTorch (parity figures), and what built and checked it
(runtime versions, precision). Apps and later ofakit stages read it instead of guessing.
"""
from __future__ import annotations

import hashlib
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.arch import ArchConfig
from ofakit.bundle import WEIGHTS, BundleInfo
from ofakit.export.formats import INPUT_NAME, OUTPUT_NAME, ArtifactSpec
from ofakit.export.verify import Parity
from ofakit.train.data import CIFAR10_CLASSES, IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from ofakit.train.data import ArrayDataset

MANIFEST_VERSION = 1

# Normalization and classes of the datasets a bundle may name in its `dataset` field (as ofakit.train.data loads them).
KNOWN_DATASETS: dict[str, dict[str, Any]] = {
    "imagenet": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "classes": None},
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616], "classes": CIFAR10_CLASSES},
    "digits": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "classes": [str(i) for i in range(10)]},
}


def manifest_path(artifact: str | Path) -> Path:
    """Where the manifest of `artifact` lives: the same name with ".json" appended."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_artifact(path: Path) -> str:
    """sha256 of an artifact: of the file, or for a folder (a Core ML package) of its files' relative paths and
    contents in sorted order."""
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0" + sha256_file(item).encode())
    return digest.hexdigest()


def describe_data(info: BundleInfo, data: ArrayDataset | None, source: str | None) -> dict[str, Any]:
    """Normalization and class names: from the data given on the command line when its classes are the model's,
    else from the dataset the bundle names, else unknown (null)."""
    normalization, classes = None, None
    if data is not None:
        normalization = {"mean": list(data.mean), "std": list(data.std), "source": f"data {source!r}"}
        if data.num_classes == info.num_classes:
            classes = list(data.classes)
    known = KNOWN_DATASETS.get(info.dataset.lower())
    if known is not None:
        if normalization is None:
            normalization = {"mean": known["mean"], "std": known["std"], "source": f"bundle dataset {info.dataset!r}"}
        if classes is None and known["classes"] is not None and len(known["classes"]) == info.num_classes:
            classes = list(known["classes"])
    return {"normalization": normalization, "classes": classes}


def build_manifest(*, format_name: str, artifact: Path, arch: ArchConfig, bundle: Path, info: BundleInfo,
                   spec: ArtifactSpec, parity: Parity, export_facts: dict[str, Any], versions: dict[str, str],
                   data_facts: dict[str, Any], bn_recalibration: dict[str, Any] | None, macs: int,
                   params: int) -> dict[str, Any]:
    """The manifest as a JSON-ready dict (see the module docstring)."""
    from ofakit import __version__

    batch: int | str = spec.batch if spec.batch is not None else "batch"
    input_facts: dict[str, Any] = {
        "name": INPUT_NAME, "shape": spec.input_shape(), "dtype": "float32", "layout": "NCHW", "color": "RGB",
        "preprocess": "resize to the input size, scale pixels to [0, 1], subtract mean, divide by std",
    }
    if spec.batch is None and format_name in ("coreml", "tensorrt"):
        input_facts["max_batch"] = spec.max_batch
    return {
        "ofakit_manifest": MANIFEST_VERSION,
        "format": format_name,
        "artifact": artifact.name,
        "precision": spec.precision,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arch": arch.to_dict(),
        "macs": macs,
        "params": params,
        "bundle": {"path": str(bundle.resolve()), "space": info.space, "dataset": info.dataset,
                   "num_classes": info.num_classes, "weights": WEIGHTS,
                   "weights_sha256": sha256_file(bundle / WEIGHTS), "ofakit_version": info.ofakit_version},
        "input": input_facts,
        "output": {"name": OUTPUT_NAME, "shape": [batch, info.num_classes], "dtype": "float32",
                   "meaning": "class logits (apply softmax for probabilities)"},
        "normalization": data_facts["normalization"],
        "classes": data_facts["classes"],
        "bn_recalibration": bn_recalibration,
        "parity": parity.to_dict(),
        "export": export_facts,
        "runtime_versions": {"ofakit": __version__, "python": platform.python_version(),
                             "platform": f"{sys.platform} {platform.machine()}", **versions},
    }

"""Bundles: a trained supernet as a directory of safe files.

    BUNDLE/
      bundle.json            space, num_classes, dataset, how it was trained, metrics, ofakit version
      supernet.safetensors   every tensor of the supernet (fp32 or fp16)
      calibration.npz        optional: a few thousand images (an array dataset, see ofakit.train.data) that export
                             uses to recalibrate BN when no --calibrate-bn data is given (the reference bundle has it)

Later stages add predictor files next to them. Nothing in a bundle is ever unpickled.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.errors import BundleError, ConfigError, UnknownNameError
from ofakit.io import atomic_path, atomic_write_json, read_json_file
from ofakit.schema import build
from ofakit.space import get_space

if TYPE_CHECKING:
    import torch

    from ofakit.supernet import Supernet

BUNDLE_JSON = "bundle.json"
WEIGHTS = "supernet.safetensors"
CALIBRATION = "calibration.npz"
FORMAT_VERSION = 1


@dataclass
class BundleInfo:
    """What bundle.json holds."""

    space: str
    num_classes: int
    dataset: str = ""  # what the supernet was trained on
    training: dict[str, Any] = field(default_factory=dict)  # recipe, time, machine, source of imported weights
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. accuracy of the largest and smallest subnets
    ofakit_version: str = ""
    created: str = ""
    weights_dtype: str = "float32"
    format: int = FORMAT_VERSION  # of the bundle's layout; bundle.json files without it are of format 1

    @classmethod
    def from_dict(cls, data: Any, source: str) -> BundleInfo:
        """What bundle.json holds, typed: unknown keys, missing keys and wrong types are a BundleError naming them."""
        try:
            info = build(cls, data, source)
        except ConfigError as exc:
            raise BundleError(str(exc)) from None
        if info.num_classes < 1:
            raise BundleError(f"{source}: 'num_classes' must be positive, got {info.num_classes}")
        if info.format != FORMAT_VERSION:  # a bundle.json without "format" is of format 1, the first
            writer = f"; it was written by ofakit {info.ofakit_version}" if info.ofakit_version else ""
            raise BundleError(f"{source}: bundle format {info.format} is not supported (this ofakit reads format "
                              f"{FORMAT_VERSION}){writer}")
        return info


def read_bundle_info(path: str | Path) -> BundleInfo:
    """Read bundle.json without importing torch; checks that the space is known."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BundleError(f"{path} is a file; a bundle is a folder ({BUNDLE_JSON}, {WEIGHTS}, ...)")
    meta = path / BUNDLE_JSON
    if not meta.exists():
        raise BundleError(f"{str(path)!r} is not a bundle: no {BUNDLE_JSON} in it "
                          "(make one with `ofakit train` or `ofakit import-ofa`)")
    info = BundleInfo.from_dict(read_json_file(meta, "a bundle.json"), str(meta))
    try:
        get_space(info.space)
    except UnknownNameError as exc:
        raise BundleError(f"{meta}: {exc}") from None
    return info


def calibration_data(path: str | Path) -> Path | None:
    """The bundle's own calibration images, if it carries them."""
    candidate = Path(path) / CALIBRATION
    return candidate if candidate.is_file() else None


def check_safetensors(path: Path) -> None:
    """Refuse a file that is not safetensors (e.g. a pickle or a torch.save zip) before any library reads it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = fh.seek(0, 2)
    except OSError as exc:
        raise BundleError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    # safetensors: an 8-byte little-endian header length, then the JSON header; checked first, since the length's
    # first byte may be 0x80 (a header of 128, 384, ... bytes) or its first two "PK" like a pickle's or a zip's
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise BundleError(f"{path} is a pickle / torch.save file, not safetensors; ofakit never unpickles files. "
                          "Convert MIT checkpoints with: ofakit import-ofa --checkpoint FILE --space SPACE --out DIR")
    if len(head) < 9 or head[8:9] != b"{":
        raise BundleError(f"{path} is not a safetensors file")


def check_state_dict(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], *, what: str,
                     space: str) -> None:
    """Raise BundleError naming missing keys, unexpected keys and shape mismatches (first few of each)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k}: {tuple(given[k].shape)} (expected {tuple(expected[k].shape)})"
             for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    if problems:
        raise BundleError(f"{what} does not fit space {space!r}: " + "; ".join(problems))


def save_bundle(path: str | Path, supernet: Supernet, *, dataset: str = "", training: dict[str, Any] | None = None,
                metrics: dict[str, Any] | None = None, dtype: str = "float32") -> BundleInfo:
    """Write `supernet` as a bundle (each file atomically). `dtype` "float16" halves the size."""
    import torch
    from safetensors.torch import save_file

    from ofakit import __version__

    if dtype not in ("float32", "float16"):
        raise BundleError(f"bundle dtype {dtype!r} is not supported (choices: float32, float16)")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in supernet.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point() and dtype == "float16":
            value = value.to(torch.float16)
        tensors[key] = value.contiguous()
    info = BundleInfo(
        space=supernet.space.name, num_classes=supernet.num_classes, dataset=dataset, training=training or {},
        metrics=metrics or {}, ofakit_version=__version__, weights_dtype=dtype,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"space": info.space, "format": str(FORMAT_VERSION)})
    atomic_write_json(path / BUNDLE_JSON, asdict(info))
    return info


def load_bundle(path: str | Path, *, device: str = "cpu") -> tuple[Supernet, BundleInfo]:
    """Build the bundle's supernet and load its weights (as float32), checking every key and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ofakit.supernet import build_supernet

    path = Path(path)
    info = read_bundle_info(path)
    weights = path / WEIGHTS
    if weights.is_dir():
        raise BundleError(f"{weights} is a folder; expected the supernet's weights (a safetensors file)")
    if not weights.is_file():
        raise BundleError(f"bundle {str(path)!r} has no {WEIGHTS}")
    check_safetensors(weights)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"cannot read {weights}: {exc}") from None
    supernet = build_supernet(info.space, num_classes=info.num_classes)
    expected = supernet.state_dict()
    check_state_dict(expected, tensors, what=str(weights), space=info.space)
    supernet.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    return supernet.to(device).eval(), info

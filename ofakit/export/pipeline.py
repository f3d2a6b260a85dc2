"""The export pipeline: bundle + arch -> subnet -> BN recalibration -> artifact -> parity check -> manifest.

Cheap checks (format, precision, output name, existing output, arch against the bundle's space, runtime) run before
any network is built. Everything is written into a temporary folder next to the output and renamed into place only
after the artifact passed its parity check, so a failure leaves nothing half-written and an old artifact intact.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.arch import ArchConfig
from ofakit.bundle import read_bundle_info
from ofakit.errors import ArchError, ConfigError
from ofakit.export.formats import FORMATS, ArtifactSpec, ExportError, ExportFormat
from ofakit.export.manifest import build_manifest, describe_data, manifest_path, sha256_artifact
from ofakit.export.onnx import MIN_OPSET
from ofakit.export.verify import Parity, check, compare, compare_images, not_compared, random_inputs, torch_predict
from ofakit.io import atomic_write_json
from ofakit.space import get_space
from ofakit.train.data import iterate_batches, load_dataset

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ofakit.train.data import ArrayDataset


@dataclass(frozen=True)
class ExportConfig:
    """How to export one subnet."""

    format: str = "onnx"  # a FORMATS name or alias
    precision: str | None = None  # fp32 / fp16 / int8; None: the format's default
    batch: int | None = 1  # fixed batch size; None: dynamic
    max_batch: int = 64  # upper bound of a dynamic batch (Core ML, TensorRT)
    opset: int = 18  # ONNX operator set (ONNX, and the ONNX TensorRT parses)
    bn_images: int = 2048  # training images for BN recalibration (OFA uses 2,000)
    int8_images: int = 512  # training images for TensorRT's int8 calibration
    verify_images: int = 512  # validation images for the top-1 agreement
    batch_size: int = 64  # images per batch for recalibration and calibration
    seed: int = 0  # random inputs and the order of calibration images
    force: bool = False  # replace an existing artifact


@dataclass(frozen=True)
class ExportResult:
    artifact: Path
    manifest: Path
    parity: Parity
    data: dict[str, Any]  # the manifest


def _check_config(cfg: ExportConfig) -> None:
    if cfg.batch is not None and cfg.batch < 1:
        raise ConfigError(f"batch size must be a positive integer or dynamic, got {cfg.batch}")
    if cfg.max_batch < 1:
        raise ConfigError(f"max_batch must be a positive integer, got {cfg.max_batch}")
    if cfg.batch is None and cfg.max_batch < 2:
        raise ConfigError(f"a dynamic batch needs max_batch >= 2, got {cfg.max_batch}; for batches of 1 use batch 1")
    if cfg.opset < MIN_OPSET:
        raise ConfigError(f"ONNX opset {cfg.opset} is too old; ofakit exports opset {MIN_OPSET} or newer")


def _check_replaceable(out: Path, fmt: ExportFormat) -> None:
    """An existing folder at `out` is replaced only by a Core ML package, and only when it is one (never a user's
    folder that happens to bear the name)."""
    if not out.is_dir() or out.is_symlink():
        return
    if fmt.name != "coreml":
        raise ExportError(f"cannot write the {fmt.name} artifact to {str(out)!r}: it is a folder")
    if not (out / "Manifest.json").is_file():
        raise ExportError(f"{str(out)!r} is a folder but not a Core ML package (no Manifest.json): ofakit replaces "
                          "only a package; choose another --out")


def _workspace(out: Path) -> tuple[Path, list[Path]]:
    """A temporary folder next to `out` (same file system, so the final rename is atomic), and the folders made for
    it, deepest first (removed again, when still empty, after a failure)."""
    blocker = next((p for p in out.parents if p.exists() or p.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise ExportError(f"cannot write {str(out)!r}: {str(blocker)!r} is not a directory")
    made = [p for p in out.parents if not (p.exists() or p.is_symlink())]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)), made
    except OSError as exc:
        _remove_empty(made)
        raise ExportError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


def _publish(src: Path, dest: Path, trash: Path) -> None:
    """Rename `src` to `dest`; an existing `dest` (file or folder) is first moved into `trash`, and put back when the
    rename fails."""
    if dest.exists() or dest.is_symlink():
        os.replace(dest, trash)
    try:
        os.replace(src, dest)
    except OSError:
        _put_back(dest, trash)
        raise


def _put_back(dest: Path, trash: Path) -> None:
    """Move what `_publish` set aside in `trash`, if anything, back to `dest`."""
    if trash.exists() or trash.is_symlink():
        os.replace(trash, dest)


def _publish_pair(artifact: Path, out: Path, workspace: Path) -> None:
    """Rename the artifact and then its manifest into place. When the manifest's rename fails, the artifact's is
    undone (the new one moved back into the workspace, the replaced one put back), so an artifact never sits beside
    another's manifest. (A process killed between the two renames can still leave such a pair; the manifest's
    `artifact_sha256` tells.)"""
    replaced = workspace / "replaced-artifact"
    _publish(artifact, out, replaced)
    try:
        _publish(manifest_path(artifact), manifest_path(out), workspace / "replaced-manifest")
    except OSError:
        os.replace(out, artifact)
        _put_back(out, replaced)
        raise


def export_subnet(bundle: str | Path, arch: ArchConfig, out: str | Path, cfg: ExportConfig = ExportConfig(), *,
                  data: str | None = None, log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Export the subnet `arch` of the bundle's supernet to `out`, check it against PyTorch, write its manifest.

    Args:
        bundle: bundle directory.
        arch: the subnet; must belong to the bundle's space.
        out: the artifact's path (its ending must fit the format); the manifest goes to `out` + ".json".
        cfg: format, precision, batch and the other settings.
        data: a data source (see `ofakit.train.data`): its train split recalibrates BN (and calibrates int8), its
            val split measures top-1 agreement. Without it BN keeps the supernet's statistics.
        log: receives one line per step.

    Raises:
        UnknownNameError, ArchError, ConfigError, BundleError: bad inputs, before any work.
        MissingRuntimeError: the format's runtime is not installed here.
        ExportError: an existing output without `force`, an unwritable path, or an artifact that fails its check.
    """
    bundle, out = Path(bundle), Path(out)
    fmt = FORMATS.get(cfg.format)
    precision = fmt.check_precision(cfg.precision)
    _check_config(cfg)
    fmt.check_suffix(out)
    _check_replaceable(out, fmt)
    if (out.exists() or out.is_symlink()) and not cfg.force:
        raise ExportError(f"{out} already exists; pass --force to replace it")
    info = read_bundle_info(bundle)
    if arch.space != info.space:
        raise ArchError(f"arch is for space {arch.space!r}, but bundle {str(bundle)!r} holds a supernet of space "
                        f"{info.space!r}; sample one with: ofakit arch sample --space {info.space}")
    space = get_space(info.space)
    space.validate(arch)
    if precision == "int8" and data is None:
        raise ExportError("an int8 engine needs calibration images; pass a data source (--calibrate-bn DATA)")
    versions = fmt.require(precision)
    train = load_dataset(data, "train", image_size=arch.resolution) if data is not None else None
    val = load_dataset(data, "val", image_size=arch.resolution) if data is not None else None
    spec = ArtifactSpec(resolution=arch.resolution, batch=cfg.batch, precision=precision, max_batch=cfg.max_batch,
                        opset=cfg.opset)

    workspace, made = _workspace(out)
    try:
        model, bn_recalibration = _prepare(bundle, arch, cfg, train, data, log)
        calibration = _calibration_batches(train, arch, cfg) if precision == "int8" else []
        artifact = workspace / out.name
        facts = fmt.build(model, artifact, spec, calibration)
        log(f"built the {fmt.name} artifact ({precision}, input {spec.input_shape()})")
        parity = _verify(fmt, artifact, spec, model, val, data, info.num_classes, cfg)
        log(parity.summary())
        check(parity)
        manifest = build_manifest(
            format_name=fmt.name, artifact=out, arch=arch, bundle=bundle, info=info, spec=spec, parity=parity,
            export_facts=facts, versions=versions, data_facts=describe_data(info, train, data),
            bn_recalibration=bn_recalibration, macs=space.macs(arch), params=space.params(arch))
        manifest["artifact_sha256"] = sha256_artifact(artifact)
        atomic_write_json(manifest_path(artifact), manifest)
        try:
            _publish_pair(artifact, out, workspace)
        except OSError as exc:
            raise ExportError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
        if not (out.exists() or out.is_symlink()):  # a failure leaves nothing, not even the folders made for it
            _remove_empty(made)
    return ExportResult(out, manifest_path(out), parity, manifest)


def _prepare(bundle: Path, arch: ArchConfig, cfg: ExportConfig, train: ArrayDataset | None, data: str | None,
             log: Callable[[str], None]) -> tuple[nn.Module, dict[str, Any] | None]:
    """The extracted subnet (eval mode, BN recalibrated on `train` when given) and what recalibrated it."""
    from ofakit.bundle import load_bundle
    from ofakit.supernet import extract_subnet
    from ofakit.supernet.calibrate import recalibrate_bn

    supernet, _ = load_bundle(bundle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an off-range resolution was already reported by the caller's validate
        model = extract_subnet(supernet, arch).eval()
    log(f"extracted the {arch.space} subnet at {arch.resolution} px "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters)")
    if train is None:
        log("note: BN statistics are kept as the supernet's; recalibrating them on a few thousand training images "
            "is recommended (--calibrate-bn DATA), since weight sharing fits them to no subnet in particular")
        return model, None
    used = recalibrate_bn(model, iterate_batches(train, cfg.batch_size, resolution=arch.resolution, shuffle=True,
                                                 seed=cfg.seed, limit=-(-cfg.bn_images // cfg.batch_size)))
    images = min(len(train), used * cfg.batch_size)
    log(f"recalibrated BN statistics on {images} training images of {data}")
    return model, {"data": data, "split": "train", "images": images}


def _calibration_batches(train: ArrayDataset | None, arch: ArchConfig, cfg: ExportConfig) -> list[torch.Tensor]:
    """Training images for int8 calibration (another draw than the BN recalibration's)."""
    if train is None:
        return []
    return [x for x, _ in iterate_batches(train, cfg.batch_size, resolution=arch.resolution, shuffle=True,
                                          seed=cfg.seed + 1, limit=-(-cfg.int8_images // cfg.batch_size))]


def _verify(fmt: ExportFormat, artifact: Path, spec: ArtifactSpec, model: nn.Module, val: ArrayDataset | None,
            data: str | None, num_classes: int, cfg: ExportConfig) -> Parity:
    """Compare the artifact with PyTorch on random inputs and, when given, on real validation images."""
    loaded = fmt.load(artifact, spec)
    if loaded.predict is None:
        return not_compared(fmt.runtime, spec.precision, loaded.note)
    reference = torch_predict(model, fmt.device)
    parity = compare(reference, loaded.predict, random_inputs(spec, seed=cfg.seed), precision=spec.precision,
                     runtime=fmt.runtime, exact=torch_predict(model, fmt.device, float64=True))
    if val is not None:
        size = spec.batch or min(32, spec.max_batch)  # a fixed-batch artifact takes only whole batches
        batches = iterate_batches(val, size, resolution=spec.resolution, drop_last=spec.batch is not None,
                                  limit=max(1, -(-cfg.verify_images // size)))
        parity.images = compare_images(reference, loaded.predict, batches, source=str(data),
                                       labels_are_classes=val.num_classes == num_classes)
        if not parity.images["images"]:
            parity.images["note"] = (f"{len(val)} validation image(s) of {data}, fewer than one batch of {size}; "
                                     "export with a smaller --batch, or --batch dynamic, to check on them")
    return parity

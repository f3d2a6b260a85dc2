"""The export pipeline's order and its writes: every cheap check runs before a network is built, a failure at any
later step leaves the old artifact and manifest as they were and no temporary folder, BN recalibration and int8
calibration draw the number of images asked for. (What a successful export writes: test_manifest.py.)"""
from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import pytest
import torch

from ofakit.errors import ArchError, BundleError, ConfigError, UnknownNameError
from ofakit.export import FORMATS, ExportConfig, ExportError, export_subnet, manifest_path, pipeline
from ofakit.space import get_space
from ofakit.train.data import load_dataset

ARCH = get_space("tiny").sample(random.Random(4))


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if the pipeline gets as far as loading the supernet."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network was built before the inputs were checked")

    monkeypatch.setattr(pipeline, "_prepare", refuse)


def _with_kernel(arch, kernel):
    return dataclasses.replace(arch, kernel_sizes=(kernel, *arch.kernel_sizes[1:]))


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"cfg": {"format": "onnxx"}}, UnknownNameError, r"unknown export format 'onnxx'.*Did you mean 'onnx'\?"),
    ({"cfg": {"precision": "fp16"}}, ExportError, r"precision 'fp16' is not available for format 'onnx' \(choices: "
                                                  r"fp32\)"),
    ({"cfg": {"batch": 0}}, ConfigError, r"batch size must be a positive integer or dynamic, got 0"),
    ({"cfg": {"max_batch": 0}}, ConfigError, r"max_batch must be a positive integer, got 0"),
    ({"cfg": {"batch": None, "max_batch": 1}}, ConfigError, r"a dynamic batch needs max_batch >= 2, got 1; for "
                                                             r"batches of 1 use batch 1"),
    ({"cfg": {"opset": 11}}, ConfigError, r"ONNX opset 11 is too old; ofakit exports opset \d+ or newer"),
    ({"out": "m.engine"}, ExportError, r"--out '.*m.engine' does not end in .onnx, the ending of onnx artifacts"),
    ({"out": "old.onnx"}, ExportError, r"old.onnx already exists; pass --force to replace it"),
    ({"bundle": "no-bundle"}, BundleError, r"is not a bundle: no bundle.json in it"),
    ({"arch": get_space("ofa-mbv3-cifar").largest()}, ArchError, r"arch is for space 'ofa-mbv3-cifar', but bundle"),
    ({"arch": _with_kernel(ARCH, 9)}, ArchError, r"kernel size 9 at block 0 is not allowed in space 'tiny'"),
    ({"cfg": {"format": "tensorrt", "precision": "int8"}, "out": "m.engine"}, ExportError,
     r"an int8 engine needs calibration images; pass a data source"),
    ({"data": "no-such-data"}, ConfigError, r"data source 'no-such-data' does not exist"),
    ({"out": "old.onnx/m.onnx"}, ExportError, r"cannot write '.*old.onnx/m.onnx': '.*old.onnx' is not a directory"),
], ids=["format", "precision", "batch", "max-batch", "dynamic-max-1", "opset", "ending", "exists", "bundle", "space", "kernel", "int8",
        "data", "parent-is-a-file"])
def test_mistakes_are_found_before_any_network_is_built(tiny_bundle, tmp_path, no_network, change, error, match):
    (tmp_path / "old.onnx").write_bytes(b"old")
    bundle = tmp_path / change["bundle"] if "bundle" in change else tiny_bundle
    with pytest.raises(error, match=match):
        export_subnet(bundle, change.get("arch", ARCH), tmp_path / change.get("out", "m.onnx"),
                      ExportConfig(**change.get("cfg", {})), data=change.get("data"))
    assert sorted(os.listdir(tmp_path)) == ["old.onnx"]  # no temporary folder, nothing else written
    assert (tmp_path / "old.onnx").read_bytes() == b"old"


class _FailingFormats:
    """FORMATS, except that building an artifact writes part of it and then raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.paths: list[Path] = []  # where each build wrote

    def get(self, name):
        def build(model, path, spec, calibration):
            self.paths.append(path)
            path.write_bytes(b"half an artifact")
            raise self.error

        return dataclasses.replace(FORMATS.get(name), build=build)


@pytest.mark.parametrize("error", [ExportError("the exporter gave up"), RuntimeError("an exporter bug")],
                         ids=["export-error", "any-error"])
def test_a_failed_build_leaves_the_old_artifact_and_no_temporary_folder(tiny_bundle, tmp_path, monkeypatch, error):
    out = tmp_path / "models" / "m.onnx"
    out.parent.mkdir()
    out.write_bytes(b"old artifact")
    manifest_path(out).write_text("old manifest")
    monkeypatch.setattr(pipeline, "FORMATS", _FailingFormats(error))
    with pytest.raises(type(error), match=str(error)):
        export_subnet(tiny_bundle, ARCH, out, ExportConfig(force=True))
    assert sorted(os.listdir(out.parent)) == ["m.onnx", "m.onnx.json"]
    assert out.read_bytes() == b"old artifact" and manifest_path(out).read_text() == "old manifest"


def test_missing_folders_of_the_output_are_made_and_go_again_on_a_failure(tiny_bundle, tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    out = tmp_path / "a" / "b" / "c" / "m.onnx"
    failing = _FailingFormats(ExportError("stop here"))
    monkeypatch.setattr(pipeline, "FORMATS", failing)
    with pytest.raises(ExportError, match="stop here"):
        export_subnet(tiny_bundle, ARCH, out)
    assert failing.paths[0].parent.parent == out.parent  # the workspace sat next to the output (an atomic rename)
    assert os.listdir(tmp_path) == ["a"] and not os.listdir(tmp_path / "a")  # b/c made for it, removed; a kept


@pytest.mark.parametrize("fmt", ["onnx", "coreml"])
def test_a_folder_in_the_way_is_never_replaced_unless_it_is_a_core_ml_package(tiny_bundle, tmp_path, no_network, fmt):
    out = tmp_path / ("user.onnx" if fmt == "onnx" else "user.mlpackage")
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "keep.txt").write_text("mine")
    match = "it is a folder" if fmt == "onnx" else r"is a folder but not a Core ML package \(no Manifest.json\)"
    with pytest.raises(ExportError, match=match):
        export_subnet(tiny_bundle, ARCH, out, ExportConfig(format=fmt, force=True))
    assert (out / "notes" / "keep.txt").read_text() == "mine"


def test_publish_replaces_a_folder_and_puts_it_back_when_the_rename_fails(tmp_path, monkeypatch):
    """An artifact can be a folder (a Core ML package): replacing it moves the old one aside, and back on failure."""
    old, new, trash = tmp_path / "m.mlpackage", tmp_path / "work" / "m.mlpackage", tmp_path / "work" / "trash"
    (old / "Data").mkdir(parents=True)
    (old / "Data" / "weights").write_text("old")
    new.parent.mkdir()
    new.write_text("new")
    real_replace = os.replace

    def failing_replace(src, dest):
        if str(src) == str(new):
            raise OSError(28, "No space left on device")
        real_replace(src, dest)

    monkeypatch.setattr(pipeline.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        pipeline._publish(new, old, trash)
    assert (old / "Data" / "weights").read_text() == "old" and new.read_text() == "new"
    monkeypatch.setattr(pipeline.os, "replace", real_replace)
    pipeline._publish(new, old, trash)
    assert old.read_text() == "new" and (trash / "Data" / "weights").read_text() == "old"


@pytest.mark.parametrize("old", [True, False], ids=["replacing", "new"])
def test_an_artifact_whose_manifest_cannot_follow_is_taken_back(tiny_bundle, tmp_path, monkeypatch, old):
    """The artifact's rename succeeded, the manifest's failed: the old pair (or nothing) is left, never a new artifact
    beside the old manifest."""
    out = tmp_path / "m.onnx"
    if old:
        out.write_bytes(b"old artifact")
        manifest_path(out).write_text("old manifest")
    real_replace = os.replace

    def failing_replace(src, dest):
        if Path(src).name == "m.onnx.json" and Path(dest) == manifest_path(out):
            raise OSError(28, "No space left on device")
        real_replace(src, dest)

    monkeypatch.setattr(pipeline.os, "replace", failing_replace)
    with pytest.raises(ExportError, match="No space left on device"):
        export_subnet(tiny_bundle, ARCH, out, ExportConfig(force=True))
    if old:
        assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.json"]
        assert out.read_bytes() == b"old artifact" and manifest_path(out).read_text() == "old manifest"
    else:
        assert os.listdir(tmp_path) == []


# -- BN recalibration and int8 calibration ------------------------------------------------------------------------
def _bn_means(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])


@pytest.fixture(scope="module")
def train():
    return load_dataset("digits", "train", image_size=ARCH.resolution)


def test_bn_is_recalibrated_on_the_images_asked_for(tiny_bundle, train):
    kept, none = pipeline._prepare(tiny_bundle, ARCH, ExportConfig(), None, None, lambda line: None)
    assert none is None
    lines = []
    model, facts = pipeline._prepare(tiny_bundle, ARCH, ExportConfig(bn_images=100, batch_size=64), train, "digits",
                                     lines.append)
    assert facts == {"data": "digits", "split": "train", "images": 128}  # two batches of 64 hold the 100 asked for
    assert lines[-1] == "recalibrated BN statistics on 128 training images of digits"
    assert not torch.allclose(_bn_means(model), _bn_means(kept))  # the statistics are the digits' now
    _, everything = pipeline._prepare(tiny_bundle, ARCH, ExportConfig(bn_images=10**6, batch_size=512), train,
                                      "digits", lines.append)
    assert everything["images"] == len(train) == 1437  # never more than the split holds


def test_int8_calibration_batches(train):
    batches = pipeline._calibration_batches(train, ARCH, ExportConfig(int8_images=100, batch_size=32))
    assert [tuple(b.shape) for b in batches] == [(32, 3, ARCH.resolution, ARCH.resolution)] * 4
    assert pipeline._calibration_batches(None, ARCH, ExportConfig()) == []


def test_real_images_are_checked_whatever_the_batch(tiny_bundle, tmp_path):
    """digits' val split holds 360 images: a dynamic batch checks every one (the last batch partial); a fixed batch
    above 360 checks none, and the export says so instead of failing."""
    lines: list[str] = []
    dynamic = export_subnet(tiny_bundle, ARCH, tmp_path / "d.onnx", ExportConfig(batch=None, bn_images=64),
                            data="digits", log=lines.append)
    assert dynamic.parity.images["images"] == 360 and dynamic.parity.image_agreement == 1.0
    big = export_subnet(tiny_bundle, ARCH, tmp_path / "b.onnx", ExportConfig(batch=400, bn_images=64), data="digits",
                        log=lines.append)
    assert big.parity.passed and big.parity.images["images"] == 0 and big.parity.image_agreement is None
    assert lines[-1].endswith("; no real images compared (360 validation image(s) of digits, fewer than one batch of "
                              "400; export with a smaller --batch, or --batch dynamic, to check on them)")
    assert big.data["parity"]["images"]["images"] == 0 and big.data["parity"]["passed"]

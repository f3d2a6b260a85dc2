"""`ofakit export`: a verified artifact and its manifest on success; one line, exit 2 and nothing written for every
user mistake (arch outside the bundle's space, unknown format, missing runtime, existing output, unwritable path)."""
from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ofakit.bundle import save_bundle  # noqa: E402
from ofakit.space import get_space  # noqa: E402
from ofakit.supernet import build_supernet  # noqa: E402

HAVE_COREMLTOOLS = importlib.util.find_spec("coremltools") is not None


@pytest.fixture
def arch_file(tmp_path) -> Path:
    path = tmp_path / "arch.json"
    path.write_text(get_space("tiny").sample(random.Random(5)).to_json())
    return path


@pytest.fixture
def out_dir(tmp_path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_onnx_with_bn_recalibration(cli, bundle, arch_file, out_dir):
    result = cli("export", "--bundle", bundle, "--arch", arch_file, "--format", "onnx", "--out", out_dir / "m.onnx",
                 "--calibrate-bn", "digits", "--batch", "dynamic")
    assert result.code == 0, result.err
    assert result.out == ""
    assert "recalibrated BN statistics on 1437 training images of digits" in result.err
    assert "ONNX Runtime (CPU) vs PyTorch on 8 random inputs: max abs diff" in result.err
    assert _listing(out_dir) == ["m.onnx", "m.onnx.json"]
    manifest = json.loads((out_dir / "m.onnx.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["images"]["top1_agreement"] == 1.0
    assert manifest["input"]["shape"][0] == "batch"


def test_without_data_says_recalibration_is_recommended(cli, bundle, arch_file, out_dir):
    result = cli("export", "--bundle", bundle, "--arch", arch_file, "--format", "torchscript",
                 "--out", out_dir / "m.pt2", "--batch", "2")
    assert result.code == 0, result.err
    assert "is recommended (--calibrate-bn DATA)" in result.err
    manifest = json.loads((out_dir / "m.pt2.json").read_text())
    assert manifest["format"] == "torch-export" and manifest["input"]["shape"][0] == 2


def test_a_bundle_with_its_own_calibration_images_uses_them(cli, tmp_path, arch_file, out_dir):
    import numpy as np

    from ofakit.train.data import load_dataset

    torch.manual_seed(0)
    bundle = tmp_path / "with-calibration"
    save_bundle(bundle, build_supernet("tiny"), dataset="digits")
    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    np.savez(bundle / "calibration.npz", train_images=train.images[:300], train_labels=train.labels[:300],
             val_images=val.images[:100], val_labels=val.labels[:100], mean=np.array(train.mean),
             std=np.array(train.std))
    result = cli("export", "--bundle", bundle, "--arch", arch_file, "--format", "onnx", "--out", out_dir / "m.onnx")
    assert result.code == 0, result.err
    assert "recalibrating BN on the bundle's own calibration images" in result.err
    assert "recalibrated BN statistics on 300 training images" in result.err
    manifest = json.loads((out_dir / "m.onnx.json").read_text())
    assert manifest["parity"]["images"]["images"] == 100
    assert manifest["normalization"]["mean"] == pytest.approx(list(train.mean))


@pytest.mark.skipif(not HAVE_COREMLTOOLS, reason="coremltools is not installed (pip install 'ofakit[coreml]')")
def test_coreml_package_is_replaced_whole_with_force(cli, bundle, arch_file, out_dir):
    (out_dir / "m.mlpackage").mkdir()
    (out_dir / "m.mlpackage" / "Manifest.json").write_text("{}")  # an older package
    (out_dir / "m.mlpackage" / "stale.txt").write_text("old")
    result = cli("export", "--bundle", bundle, "--arch", arch_file, "--format", "coreml", "--out",
                 out_dir / "m.mlpackage")
    result.assert_user_error("already exists; pass --force to replace it")
    result = cli("export", "--bundle", bundle, "--arch", arch_file, "--format", "coreml", "--out",
                 out_dir / "m.mlpackage", "--force")
    assert result.code == 0, result.err
    assert not (out_dir / "m.mlpackage" / "stale.txt").exists()
    assert (out_dir / "m.mlpackage" / "Manifest.json").is_file()
    manifest = json.loads((out_dir / "m.mlpackage.json").read_text())
    assert manifest["precision"] == "fp16"
    assert manifest["parity"]["compared"] is (manifest["runtime_versions"]["platform"].startswith("darwin"))
    assert [p for p in _listing(out_dir) if "/" not in p] == ["m.mlpackage", "m.mlpackage.json"]


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_arch_by_name_is_the_bundle_space_extreme(cli, bundle, out_dir, which):
    result = cli("export", "--bundle", bundle, "--arch", which, "--format", "onnx", "--out", out_dir / "m.onnx")
    assert result.code == 0, result.err
    manifest = json.loads((out_dir / "m.onnx.json").read_text())
    space = get_space("tiny")
    assert manifest["arch"] == json.loads(getattr(space, which)().to_json())
    assert space.largest() != space.smallest()


def _other_space_arch(tmp_path: Path) -> Path:
    path = tmp_path / "cifar.json"
    path.write_text(get_space("ofa-mbv3-cifar").largest().to_json())
    return path


def _blocked_out(tmp_path: Path) -> Path:
    (tmp_path / "out" / "file").write_text("a file, not a folder")
    return tmp_path / "out" / "file" / "m.onnx"


@pytest.mark.parametrize(("change", "fragments"), [
    ({"--arch": _other_space_arch}, ["arch is for space 'ofa-mbv3-cifar'", "holds a supernet of space 'tiny'"]),
    ({"--format": "onxx"}, ["unknown export format 'onxx'", "Did you mean 'onnx'?"]),
    ({"--format": "tensorrt", "--out": "m.engine"}, ["TensorRT export needs"]),
    ({"--out": _blocked_out}, ["cannot write", "is not a directory"]),
    ({"--out": "m.mlpackage"}, ["does not end in .onnx"]),
    ({"--precision": "fp16"}, ["precision 'fp16' is not available for format 'onnx' (choices: fp32)"]),
    ({"--format": "tensorrt", "--out": "m.engine", "--precision": "int8"}, ["int8 engine needs calibration images"]),
    ({"--batch": "many"}, ["--batch must be a positive integer or 'dynamic', got 'many'"]),
    ({"--batch": "0"}, ["--batch must be a positive integer or 'dynamic', got '0'"]),
    ({"--calibrate-bn": "no-such-data"}, ["data source 'no-such-data' does not exist"]),
    ({"--bundle": "no-such-bundle"}, ["no bundle at 'no-such-bundle'", "ofakit bundle list"]),
    ({"--arch": "no-such-arch.json"}, ["cannot read an arch file"]),
], ids=["arch-of-other-space", "unknown-format", "missing-runtime", "unwritable", "wrong-ending", "precision",
        "int8-without-data", "batch-word", "batch-zero", "missing-data", "missing-bundle", "missing-arch"])
def test_user_mistakes(cli, bundle, arch_file, out_dir, tmp_path, change, fragments):
    if change.get("--format") == "tensorrt" and "--precision" not in change and importlib.util.find_spec("tensorrt") \
            and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are present")
    args = {"--bundle": bundle, "--arch": arch_file, "--format": "onnx", "--out": "m.onnx"}
    args.update(change)
    args = {k: v(tmp_path) if callable(v) else v for k, v in args.items()}
    if not Path(args["--out"]).is_absolute() and "/" not in str(args["--out"]):
        args["--out"] = out_dir / args["--out"]
    before = _listing(tmp_path)
    result = cli("export", *[str(x) for pair in args.items() for x in pair])
    result.assert_user_error(*fragments)
    assert _listing(tmp_path) == before  # nothing written, no temporary files left


@pytest.mark.parametrize(("fmt", "name", "fragment"), [
    ("onnx", "user.onnx", "cannot write the exported model to '{out}': it is a folder"),
    ("torchscript", "user.pt2", "cannot write the exported model to '{out}': it is a folder"),
    ("coreml", "user.mlpackage", "'{out}' is a folder but not a Core ML package (no Manifest.json)"),
])
def test_force_never_replaces_a_users_folder(cli, bundle, arch_file, out_dir, fmt, name, fragment):
    out = out_dir / name
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "keep.txt").write_text("mine")
    result = cli("export", "--bundle", bundle, "--arch", arch_file, "--format", fmt, "--out", out, "--force")
    result.assert_user_error(fragment.format(out=out))
    assert (out / "notes" / "keep.txt").read_text() == "mine" and _listing(out_dir) == [name, f"{name}/notes",
                                                                                         f"{name}/notes/keep.txt"]


def test_existing_output_is_kept_without_force(cli, bundle, arch_file, out_dir):
    (out_dir / "m.onnx").write_bytes(b"keep me")
    result = cli("export", "--bundle", bundle, "--arch", arch_file, "--format", "onnx", "--out", out_dir / "m.onnx")
    result.assert_user_error(f"{out_dir / 'm.onnx'} already exists; pass --force to replace it")
    assert (out_dir / "m.onnx").read_bytes() == b"keep me"
    assert _listing(out_dir) == ["m.onnx"]


def test_help_lists_the_formats(cli):
    result = cli("export", "--help")
    assert result.code == 0
    for name in ("coreml", "onnx", "tensorrt", "torch-export", "--calibrate-bn", "--batch", "--force"):
        assert name in result.out

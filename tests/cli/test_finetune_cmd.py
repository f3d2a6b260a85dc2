"""`ofakit finetune`: a fine-tuned bundle and arch.json that `ofakit export` ships (the ONNX model computes what the
fine-tuned subnet computes); re-running resumes; one line and exit 2 for every user mistake, before torch is
imported where the mistake is in the flags."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ofakit.bundle import load_bundle  # noqa: E402
from ofakit.space import get_space  # noqa: E402
from ofakit.supernet import extract_subnet  # noqa: E402
from ofakit.train.data import iterate_batches, load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--epochs", "1", "--batch-size", "32", "--set", "stages.0.max_steps=4", "--set", "eval_max_batches=1",
         "--set", "recalibration_batches=1", "--quiet"]


@pytest.fixture(scope="module")
def arch_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "arch.json"
    path.write_text(get_space("tiny").smallest().to_json())
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, bundle, arch_file) -> Path:
    """A completed fine-tuning run directory."""
    from ofakit.cli.main import main

    out = tmp_path_factory.mktemp("ft") / "run"
    assert main(["finetune", "--bundle", str(bundle), "--arch", str(arch_file), "--data", "digits",
                 "--out", str(out), *QUICK]) == 0
    return out


def test_finetune_then_export_onnx(cli, bundle, tmp_path):
    out = tmp_path / "run"  # --arch by name: the bundle's smallest subnet (the `finished` fixture passes a file)
    result = cli("finetune", "--bundle", bundle, "--arch", "smallest", "--data", "digits", "--out", out, *QUICK)
    assert result.code == 0, result.err
    assert f"fine-tuned bundle written to {out / 'bundle'}" in result.err
    assert f"ofakit export --bundle {out / 'bundle'} --arch {out / 'arch.json'}" in result.err
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "bundle", "checkpoints", "metrics.jsonl",
                                                     "run.json"]

    model = tmp_path / "m.onnx"
    exported = cli("export", "--bundle", out / "bundle", "--arch", out / "arch.json", "--format", "onnx",
                   "--out", model)
    assert exported.code == 0, exported.err
    manifest = json.loads((tmp_path / "m.onnx.json").read_text())
    assert manifest["parity"]["passed"] and manifest["arch"] == get_space("tiny").smallest().to_dict()

    import onnxruntime as ort

    arch = get_space("tiny").smallest()
    subnet = extract_subnet(load_bundle(out / "bundle")[0], arch).eval()
    x, _ = next(iterate_batches(load_dataset("digits", "val"), 1, resolution=arch.resolution))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = subnet(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_rerunning_a_finished_run_keeps_its_weights(cli, bundle, arch_file, finished):
    from safetensors.torch import load_file  # tensors, not bytes: safetensors orders its header metadata freely

    before = load_file(finished / "bundle" / "supernet.safetensors")
    before_files = {p: p.stat().st_mtime_ns for p in finished.rglob("*")}
    result = cli("finetune", "--bundle", bundle, "--arch", arch_file, "--data", "digits", "--out", finished, *QUICK)
    assert result.code == 0, result.err
    assert f"{finished} is already finished; nothing was trained or written" in result.err
    assert {p: p.stat().st_mtime_ns for p in finished.rglob("*")} == before_files  # nothing touched
    after = load_file(finished / "bundle" / "supernet.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _other_space_arch(tmp_path: Path) -> Path:
    path = tmp_path / "cifar.json"
    path.write_text(get_space("ofa-mbv3-cifar").largest().to_json())
    return path


def _train_run(tmp_path: Path) -> Path:
    run = tmp_path / "trained"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"recipe_name": "tiny-digits.yaml", "digest": "0" * 16}))
    return run


@pytest.mark.parametrize(("change", "fragments"), [
    ({"--arch": _other_space_arch}, ["arch is for space 'ofa-mbv3-cifar'", "holds a supernet of space 'tiny'"]),
    ({"--bundle": "no-such-bundle"}, ["no bundle at 'no-such-bundle'"]),
    ({"--arch": "no-such-arch.json"}, ["cannot read an arch file"]),
    ({"--epochs": "0"}, ["epochs must be a positive integer, got 0"]),
    ({"--lr": "-1"}, ["lr must be >= 0, got -1.0"]),
    ({"--set": "augmnt=false"}, ["unknown key(s) 'augmnt' (did you mean 'augment'?)"]),
    ({"--out": _train_run}, ["holds a training run (recipe 'tiny-digits.yaml'), not a fine-tuning run"]),
    ({"--data": "no-such-data"}, ["data source 'no-such-data' does not exist"]),
], ids=["arch-of-other-space", "missing-bundle", "missing-arch", "zero-epochs", "negative-lr", "set-typo",
        "train-run-dir", "missing-data"])
def test_user_mistakes(cli, bundle, arch_file, tmp_path, change, fragments):
    args = {"--bundle": bundle, "--arch": arch_file, "--data": "digits", "--out": tmp_path / "run"}
    args.update({k: v(tmp_path) if callable(v) else v for k, v in change.items()})
    before = sorted(tmp_path.rglob("*"))
    result = cli("finetune", *[str(x) for pair in args.items() for x in pair], "--quiet")
    result.assert_user_error(*fragments)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_other_settings_on_a_finished_run_are_refused_naming_them(cli, bundle, arch_file, finished):
    result = cli("finetune", "--bundle", bundle, "--arch", arch_file, "--data", "digits", "--out", finished,
                 *QUICK, "--lr", "0.5")
    result.assert_user_error(f"{finished} holds a run of another recipe", "it differs in stages.0.lr")


@pytest.mark.parametrize(("argv", "code"), [
    (["finetune", "--help"], 0),
    (["finetune", "--bundle", "b", "--arch", "a.json", "--data", "digits", "--out", "o", "--epochs", "0"], 2),
], ids=["help", "zero-epochs"])
def test_help_and_flag_errors_do_not_import_torch(argv, code):
    script = (f"import sys; from ofakit.cli.main import main; code = main({argv!r}); "
              f"assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert "torch was imported" not in proc.stderr
    assert proc.returncode == code, proc.stderr

"""`ofakit import-ofa`: a MIT once-for-all checkpoint becomes a bundle whose supernet gives MIT's logits.

The checkpoint is MIT's real key list (tests/fixtures/ofa) filled with the deterministic weights of
tests/fixtures/ofa/weights.py, saved with torch.save as MIT's model zoo files are; the reference logits were
computed by MIT's own code for the same weights.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ofakit.bundle import load_bundle  # noqa: E402
from ofakit.space import get_space  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ofa"
NAME = "ofa_mbv3_d234_e346_k357_w1.0"
SPACE = "ofa-mbv3-w1.0"


def mit_checkpoint(name: str, path: Path) -> Path:
    spec = importlib.util.spec_from_file_location("ofa_fixture_weights", FIXTURES / "weights.py")
    weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(weights)
    keys = json.loads((FIXTURES / f"{name}.keys.json").read_text())["keys"]
    state = weights.deterministic_state_dict({key: shape for key, shape, _ in keys})
    torch.save({key: torch.from_numpy(value) for key, value in state.items()}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return mit_checkpoint(NAME, tmp_path_factory.mktemp("mit") / f"{NAME}.pth")


def test_import_gives_mit_logits(cli, checkpoint, tmp_path):
    out = tmp_path / "bundle"
    result = cli("import-ofa", "--checkpoint", checkpoint, "--space", SPACE, "--out", out)
    assert result.code == 0, result.err
    assert f"imported {checkpoint.name}" in result.err

    info = cli("bundle", "info", out, "--check", "--json")
    assert info.code == 0, info.err
    data = json.loads(info.out)
    assert data["space"] == SPACE and data["num_classes"] == 1000 and data["checked"] is True
    assert data["dataset"] == "imagenet" and data["training"]["checkpoint"] == checkpoint.name

    supernet, bundle_info = load_bundle(out)
    assert bundle_info.space == SPACE
    assert data["parameters"] == sum(p.numel() for p in supernet.parameters())
    supernet.set_active(get_space(SPACE).largest())
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        got = supernet(x).numpy()
    np.testing.assert_allclose(got, np.load(FIXTURES / f"{NAME}.logits.npz")["subnet_0"], atol=1e-6)

    again = cli("import-ofa", "--checkpoint", checkpoint, "--space", SPACE, "--out", out)
    again.assert_user_error(str(out), "already holds a bundle", "--force")
    stale = ["calibration.npz", "accuracy_records.jsonl", "predictor.json", "predictor.safetensors"]
    for name in [*stale, "notes.txt"]:  # what described the old weights, and a file of the user's
        (out / name).write_text("old")
    forced = cli("import-ofa", "--checkpoint", checkpoint, "--space", SPACE, "--out", out, "--force",
                 "--dataset", "imagenet-1k")
    assert forced.code == 0, forced.err
    assert json.loads((out / "bundle.json").read_text())["dataset"] == "imagenet-1k"
    assert not any((out / name).exists() for name in stale) and (out / "notes.txt").read_text() == "old"
    assert f"removed the replaced bundle's {', '.join(stale)} from {out}" in forced.err


# -- user mistakes: one line, exit code 2 -----------------------------------------------------------------------
def test_unknown_space(cli, checkpoint, tmp_path):
    cli("import-ofa", "--checkpoint", checkpoint, "--space", "ofa-mbv3-w1", "--out", tmp_path / "b") \
        .assert_user_error("unknown search space 'ofa-mbv3-w1'", "Did you mean")


def test_missing_checkpoint(cli, tmp_path):
    cli("import-ofa", "--checkpoint", tmp_path / "nope.pth", "--space", SPACE, "--out", tmp_path / "b") \
        .assert_user_error("nope.pth", "does not exist")


def test_out_is_a_file(cli, checkpoint, tmp_path):
    (tmp_path / "b").write_text("")
    cli("import-ofa", "--checkpoint", checkpoint, "--space", SPACE, "--out", tmp_path / "b") \
        .assert_user_error("is a file")


def test_checkpoint_of_another_family_names_its_space(cli, checkpoint, tmp_path):
    cli("import-ofa", "--checkpoint", checkpoint, "--space", "ofa-resnet50", "--out", tmp_path / "b") \
        .assert_user_error("not part of MIT's 'ofa-resnet50' supernet", f"looks like a checkpoint of space '{SPACE}'")
    assert not (tmp_path / "b").exists()


def test_checkpoint_of_another_width_names_its_space(cli, checkpoint, tmp_path):
    cli("import-ofa", "--checkpoint", checkpoint, "--space", "ofa-mbv3-w1.2", "--out", tmp_path / "b") \
        .assert_user_error("does not fit space 'ofa-mbv3-w1.2'", f"'{SPACE}'")


def test_checkpoint_of_another_width_reports_shapes(cli, checkpoint, tmp_path):
    cli("import-ofa", "--checkpoint", checkpoint, "--space", "ofa-mbv3-w1.2", "--out", tmp_path / "b") \
        .assert_user_error("does not fit space 'ofa-mbv3-w1.2'", "wrong shape: stem_conv.weight")


class Payload:
    """Any object a pickle could carry; weights_only loading must refuse it without constructing it."""


def test_checkpoint_with_a_python_object_is_refused(cli, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    cli("import-ofa", "--checkpoint", path, "--space", SPACE, "--out", tmp_path / "b") \
        .assert_user_error("refusing to load", "weights_only")


@pytest.mark.parametrize(("content", "fragment"), [
    ({"state_dict": {"a": 1}}, "not a state dict of tensors"),
    ([torch.zeros(1)], "not a state dict of tensors"),
], ids=["ints", "list"])
def test_checkpoint_that_is_not_a_state_dict(cli, tmp_path, content, fragment):
    path = tmp_path / "c.pth"
    torch.save(content, path)
    cli("import-ofa", "--checkpoint", path, "--space", SPACE, "--out", tmp_path / "b").assert_user_error(fragment)


def test_checkpoint_that_is_not_a_torch_file(cli, tmp_path):
    path = tmp_path / "c.pth"
    path.write_bytes(b"not a checkpoint at all")
    cli("import-ofa", "--checkpoint", path, "--space", SPACE, "--out", tmp_path / "b").assert_user_error("c.pth")


# -- --predictor: MIT's accuracy predictor into predictor.json + predictor.safetensors --------------------------
PREDICTORS = json.loads((FIXTURES / "acc_predictor_reference.json").read_text())["layouts"]


@pytest.mark.parametrize("layout", sorted(PREDICTORS))
def test_import_predictor_gives_mit_predictions(cli, tmp_path, layout):
    from ofakit.arch import ArchConfig
    from ofakit.predict.accuracy import AccuracyPredictor

    ref = PREDICTORS[layout]
    out = tmp_path / "out"  # no bundle there: the predictor alone
    result = cli("import-ofa", "--predictor", FIXTURES / ref["file"], "--space", ref["space"], "--out", out)
    assert result.code == 0, result.err
    assert f"imported {ref['file']} (MIT {layout} layout" in result.err
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "predictor.json", "predictor.safetensors"]
    pred = AccuracyPredictor.load(out)
    got = pred.predict([ArchConfig.from_dict(a["arch"]) for a in ref["archs"]])
    np.testing.assert_allclose(got, [a["prediction"] for a in ref["archs"]], rtol=0, atol=1e-5)

    again = cli("import-ofa", "--predictor", FIXTURES / ref["file"], "--space", ref["space"], "--out", out)
    again.assert_user_error("already holds an accuracy predictor", "--force")
    forced = cli("import-ofa", "--predictor", FIXTURES / ref["file"], "--space", ref["space"], "--out", out, "--force")
    assert forced.code == 0, forced.err


def test_import_predictor_into_an_existing_bundle(cli, checkpoint, tmp_path):
    out = tmp_path / "bundle"
    assert cli("import-ofa", "--checkpoint", checkpoint, "--space", SPACE, "--out", out).code == 0
    ref = PREDICTORS["ofa-nas"]  # built for ofa-mbv3-w1.0, the checkpoint's space
    result = cli("import-ofa", "--predictor", FIXTURES / ref["file"], "--space", SPACE, "--out", out)
    assert result.code == 0, result.err
    assert "searches use resolutions 128, 132," in result.err
    assert {"bundle.json", "supernet.safetensors", "predictor.json", "predictor.safetensors"} <= {
        p.name for p in out.iterdir()}
    assert cli("bundle", "info", out, "--check").code == 0


def test_import_checkpoint_and_predictor_together(cli, checkpoint, tmp_path):
    out = tmp_path / "bundle"
    ref = PREDICTORS["ofa-nas"]
    result = cli("import-ofa", "--checkpoint", checkpoint, "--predictor", FIXTURES / ref["file"], "--space", SPACE,
                 "--out", out)
    assert result.code == 0, result.err
    assert (out / "bundle.json").is_file() and (out / "predictor.json").is_file()


def test_predictor_for_a_bundle_of_another_space(cli, checkpoint, tmp_path):
    out = tmp_path / "bundle"
    assert cli("import-ofa", "--checkpoint", checkpoint, "--space", SPACE, "--out", out).code == 0
    ref = PREDICTORS["ofa-tutorial"]
    cli("import-ofa", "--predictor", FIXTURES / ref["file"], "--space", "ofa-mbv3-w1.2", "--out", out) \
        .assert_user_error(f"holds a bundle of space '{SPACE}', not 'ofa-mbv3-w1.2'")
    assert not (out / "predictor.json").exists()


def test_neither_checkpoint_nor_predictor(cli, tmp_path):
    cli("import-ofa", "--space", SPACE, "--out", tmp_path / "b") \
        .assert_user_error("nothing to import", "--checkpoint", "--predictor")


def test_missing_predictor(cli, tmp_path):
    cli("import-ofa", "--predictor", tmp_path / "acc.pth", "--space", SPACE, "--out", tmp_path / "b") \
        .assert_user_error("acc.pth", "does not exist")


def test_bad_predictor_writes_no_bundle(cli, checkpoint, tmp_path):
    path = tmp_path / "acc.pth"
    torch.save({"x": Payload()}, path)
    cli("import-ofa", "--checkpoint", checkpoint, "--predictor", path, "--space", SPACE, "--out", tmp_path / "b") \
        .assert_user_error("refusing to load", "weights_only")
    assert not (tmp_path / "b").exists()


def test_predictor_resolutions_option(cli, tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {"base_acc": torch.tensor([0.7]), "layers.3.weight": torch.randn(1, 8, generator=g)}
    for i, fan_in in enumerate((3 + 120, 8, 8)):
        state[f"layers.{i}.0.weight"] = torch.randn(8, fan_in, generator=g)
        state[f"layers.{i}.0.bias"] = torch.randn(8, generator=g)
    path = tmp_path / "acc.pth"
    torch.save(state, path)
    cli("import-ofa", "--predictor", path, "--space", SPACE, "--out", tmp_path / "b") \
        .assert_user_error("encodes 3 resolutions", "--resolutions")
    cli("import-ofa", "--predictor", path, "--space", SPACE, "--out", tmp_path / "b", "--resolutions", "32", "0",
        "28").assert_user_error("resolutions must be positive whole numbers", "got 0")
    assert not (tmp_path / "b" / "predictor.json").exists()  # nothing written that the loader would refuse
    ok = cli("import-ofa", "--predictor", path, "--space", SPACE, "--out", tmp_path / "b", "--resolutions", "160",
             "192", "224")
    assert ok.code == 0, ok.err
    assert json.loads((tmp_path / "b" / "predictor.json").read_text())["meta"]["mit_resolutions"] == [160, 192, 224]


def test_a_predictor_imported_with_force_drops_the_old_predictors_metrics(cli, tmp_path):
    """bundle.json's metrics.predictor described the replaced (fitted) predictor: after --force it is gone, so
    `bundle info` shows no fitted predictor's figures for MIT's, and the other metrics stay."""
    out = tmp_path / "b"
    ref = PREDICTORS["ofa-tutorial"]
    assert cli("import-ofa", "--predictor", FIXTURES / ref["file"], "--space", ref["space"], "--out", out).code == 0
    info = json.loads((out / "bundle.json").read_text())
    info["metrics"] = {"largest": {"top1": 0.8}, "predictor": {"kind": "gbm", "samples": 580,
                                                               "heldout": {"kendall_tau": 0.898}}}
    (out / "bundle.json").write_text(json.dumps(info))
    forced = cli("import-ofa", "--predictor", FIXTURES / ref["file"], "--space", ref["space"], "--out", out, "--force")
    assert forced.code == 0, forced.err
    assert json.loads((out / "bundle.json").read_text())["metrics"] == {"largest": {"top1": 0.8}}
    shown = cli("bundle", "info", out)
    assert shown.code == 0 and "gbm" not in shown.out and "0.898" not in shown.out

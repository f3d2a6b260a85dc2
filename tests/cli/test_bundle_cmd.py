"""`ofakit bundle info [--check] [--json]`: a bundle's metadata, and the checks that refuse broken or unsafe bundles."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ofakit.bundle import save_bundle  # noqa: E402
from ofakit.supernet import build_supernet  # noqa: E402


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return build_supernet("tiny")


@pytest.fixture
def bundle(tiny_net, tmp_path) -> Path:
    save_bundle(tmp_path / "tiny", tiny_net, dataset="cifar10", metrics={"top1_largest": 0.5})
    return tmp_path / "tiny"


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_info_json(cli, bundle, tiny_net):
    result = cli("bundle", "info", bundle, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["space"] == "tiny" and data["num_classes"] == tiny_net.num_classes
    assert data["dataset"] == "cifar10" and data["metrics"] == {"top1_largest": 0.5}
    assert "checked" not in data

    checked = json.loads(cli("bundle", "info", bundle, "--check", "--json").out)
    assert checked["checked"] is True
    assert checked["parameters"] == sum(p.numel() for p in tiny_net.parameters())


def test_info_text(cli, bundle):
    result = cli("bundle", "info", bundle, "--check")
    assert result.code == 0
    assert "space" in result.out and "tiny" in result.out and "checked" in result.out
    assert "top-1           top1_largest 50.00 %" in result.out
    assert f"ofakit bundle info {bundle} --json" in result.out
    assert result.err == ""


def test_info_text_summarizes_a_chain_of_runs_and_the_test_top1(cli, bundle):
    chain = [{"recipe": "recipes/a.yaml", "stages": ["full"], "steps": 42120, "train_minutes": 410.2},
             {"recipe": "recipes/b.yaml", "stages": ["full-kd"], "steps": 14040, "train_minutes": 160.0,
              "set": {"teacher": ["run1/bundle", "old/bundle"], "stages.0.kd_weight": 1.0},
              "teachers": [{"bundle": "run1/bundle"},
                           {"bundle": "old/bundle", "weights_sha256": "0123456789abcdef", "largest_test_top1": 0.8737,
                            "created": "2026-12-06T08:50:43+00:00", "recipes": ["recipes/a.yaml"]}]}]
    _edit_json(bundle / "bundle.json", training={"recipe": "recipes/b.yaml", "chain": chain, "steps": 56160,
                                                 "train_minutes": 570.2, "machine": {"cpu": "Some CPU", "cores": 2},
                                                 "recipe_config": {"stages": [{"name": "full-kd"}]}},
               metrics={"test_top1": {"largest": 0.9012, "smallest": 0.7}, "test_set": "10,000 test images",
                        "predictor": {"kind": "gbm", "samples": 580, "heldout": {"kendall_tau": 0.8864}}})
    out = cli("bundle", "info", bundle).out
    assert "top-1           largest 90.12 %, smallest 70.00 % (10,000 test images)" in out
    assert "training        a chain of 2 runs, 56,160 steps, 570 min on Some CPU (2 cores)" in out
    assert "  run 1         recipes/a.yaml: full, 42,120 steps, 410 min" in out
    assert ("  run 2         recipes/b.yaml with teacher=['run1/bundle', 'old/bundle'], stages.0.kd_weight=1.0: "
            "full-kd, 14,040 steps, 160 min") in out
    assert "    teacher     run1/bundle\n" in out
    assert "    teacher     old/bundle (largest 87.37 %, made 2026-12-06, weights sha256 0123456789abcdef)" in out
    assert "predictor       gbm, fitted on 580 subnets; held out: Kendall tau 0.886" in out
    assert "recipe_config" not in out  # the detail is in --json


def test_info_text_takes_odd_metadata_without_a_traceback(cli, bundle):
    _edit_json(bundle / "bundle.json", training={"chain": "not a list", "steps": "many", "machine": [1]},
               metrics={"test_top1": {"largest": "high"}, "largest": {"top1": 2.0}, "predictor": {"heldout": 3}})
    result = cli("bundle", "info", bundle)
    assert result.code == 0 and result.err == ""
    assert "space           tiny" in result.out and "top-1" not in result.out
    _edit_json(bundle / "bundle.json", training={"chain": [{"teachers": [1, {"bundle": 3, "created": 5}]},
                                                           {"teachers": "old/bundle"}]})
    result = cli("bundle", "info", bundle)
    assert result.code == 0 and result.err == ""
    assert "    teacher     3\n" in result.out and result.out.count("teacher") == 1


# -- user mistakes: one line, exit code 2 -----------------------------------------------------------------------
def test_weights_of_another_space(cli, bundle):
    _edit_json(bundle / "bundle.json", space="ofa-mbv3-cifar")
    assert cli("bundle", "info", bundle).code == 0  # metadata alone looks fine; --check loads the weights
    line = cli("bundle", "info", bundle, "--check").assert_user_error("does not fit space 'ofa-mbv3-cifar'")
    assert "missing" in line or "wrong shape" in line


def test_weights_that_are_a_pickle(cli, bundle, tiny_net):
    torch.save(tiny_net.state_dict(), bundle / "supernet.safetensors")
    cli("bundle", "info", bundle, "--check").assert_user_error("pickle", "never unpickles", "ofakit import-ofa")


def test_weights_that_are_garbage(cli, bundle):
    (bundle / "supernet.safetensors").write_bytes(b"\x00" * 64)
    cli("bundle", "info", bundle, "--check").assert_user_error("not a safetensors file")


def test_weights_missing(cli, bundle):
    (bundle / "supernet.safetensors").unlink()
    cli("bundle", "info", bundle, "--check").assert_user_error("has no supernet.safetensors")


def test_directory_without_bundle_json(cli, tmp_path):
    cli("bundle", "info", tmp_path).assert_user_error("is not a bundle", "no bundle.json")
    cli("bundle", "info", tmp_path / "nowhere").assert_user_error("no bundle at", "not a directory, and not a shipped "
                                                                   "bundle", "ofakit bundle list")


def test_bundle_json_with_an_unknown_key(cli, bundle):
    _edit_json(bundle / "bundle.json", acuracy=0.7)
    cli("bundle", "info", bundle).assert_user_error("unknown key(s) 'acuracy'", "allowed: ")


def test_bundle_json_missing_a_key(cli, bundle):
    data = json.loads((bundle / "bundle.json").read_text())
    del data["num_classes"]
    (bundle / "bundle.json").write_text(json.dumps(data))
    cli("bundle", "info", bundle).assert_user_error("missing key(s) 'num_classes'")


def test_bundle_json_malformed(cli, bundle):
    (bundle / "bundle.json").write_text("{")
    cli("bundle", "info", bundle).assert_user_error("bundle.json", "not a bundle.json (not JSON: ")
    (bundle / "bundle.json").write_text("[]")
    cli("bundle", "info", bundle).assert_user_error("bundle.json: expected a mapping, got a list")


def test_bundle_json_unknown_space(cli, bundle):
    _edit_json(bundle / "bundle.json", space="tinyy")
    cli("bundle", "info", bundle).assert_user_error("unknown search space 'tinyy'", "Did you mean 'tiny'?")


def test_bundle_json_with_a_wrong_type(cli, bundle):
    _edit_json(bundle / "bundle.json", num_classes="ten")
    cli("bundle", "info", bundle, "--check").assert_user_error("num_classes")

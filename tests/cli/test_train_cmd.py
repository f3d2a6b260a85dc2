"""`ofakit train`: every broken file or flag a user can hand it (recipe, --set, --out, run.json, a checkpoint's
state.json) is one line and exit 2, with nothing of the user's overwritten."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

RECIPE = ("space: tiny\ndata: digits\nbatch_size: 32\nbase_batch_size: 32\ncheckpoint_every: 1\n"
          "eval_max_batches: 1\nrecalibration_batches: 1\neval_random_subnets: 0\n"
          "stages:\n  - {name: a, sampler: largest, max_steps: 2}\n")


def _recipe(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    return path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _file_out(tmp_path: Path) -> list[str]:
    (tmp_path / "taken").write_text("mine")
    return ["--out", str(tmp_path / "taken")]


def _under_a_file(tmp_path: Path) -> list[str]:
    (tmp_path / "taken").write_text("mine")
    return ["--out", str(tmp_path / "taken" / "run")]


def _bad_run_json(text: bytes) -> object:
    def make(tmp_path: Path) -> list[str]:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "run.json").write_bytes(text)
        return []
    return make


@pytest.mark.parametrize(("make", "fragments"), [
    (lambda p: ["--set", "lr=[1,"], ["--set lr: value '[1,' is not YAML"]),
    (lambda p: ["--set", "stages.0.name.x=1"], ["stages.0.name is 'a', not a mapping or a list"]),
    (lambda p: ["--set", "stages.0.epochs.x=1"], ["stages[0]: epochs: expected an integer, got a mapping"]),
    (_file_out, ["is a file; pass a run directory"]),
    (_under_a_file, ["cannot create run directory", "is a file"]),
    (_bad_run_json(b"{\"digest\": "), ["run.json: not an ofakit run record (not JSON"]),
    (_bad_run_json(b"\xff\xfe"), ["run.json: not an ofakit run record (not UTF-8"]),
    (_bad_run_json(b"[1, 2]"), ["run.json: run record: expected a mapping, got a list"]),
    (_bad_run_json(b'{"digest": 3}'), ["run.json: run record: digest: expected a string, got 3"]),
    (_bad_run_json(b'{"digest": "x", "colour": 1}'), ["run record: unknown key(s) 'colour'"]),
], ids=["set-not-yaml", "set-into-a-string", "set-into-a-missing-key", "out-is-a-file", "out-under-a-file",
        "run-json-truncated", "run-json-binary", "run-json-list", "run-json-wrong-type", "run-json-unknown-key"])
def test_user_mistakes_are_one_line(cli, tmp_path, make, fragments):
    extra = make(tmp_path)
    if "--out" not in extra:
        extra = [*extra, "--out", str(tmp_path / "run")]
    recipe = _recipe(tmp_path)
    before = _snapshot(tmp_path)
    cli("train", "--recipe", recipe, *extra, "--quiet").assert_user_error(*fragments)
    assert _snapshot(tmp_path) == before  # nothing written, nothing overwritten


@pytest.mark.parametrize(("content", "fragments"), [
    (b"", ["state.json: not a checkpoint state file (not JSON"]),
    (b"\x80\x04K\x01.", ["state.json: not a checkpoint state file (not UTF-8"]),
    (b'{"step": "5"}', ["checkpoint state: step: expected an integer, got '5'"]),
    (b'{"step": 2, "optimizer": {"state": {}}}', ["checkpoint state: optimizer: missing key(s) 'param_groups'"]),
], ids=["empty", "pickle", "wrong-type", "optimizer-without-groups"])
def test_a_broken_checkpoint_is_one_line(cli, tmp_path, content, fragments):
    recipe = _recipe(tmp_path)
    run = tmp_path / "run"
    cli("train", "--recipe", recipe, "--out", run, "--set", "stages.0.max_steps=1", "--quiet")
    (run / "bundle").rename(tmp_path / "old-bundle")  # an unfinished run, whose last checkpoint is broken
    state = next((run / "checkpoints").iterdir()) / "state.json"
    state.write_bytes(content)
    before = _snapshot(tmp_path)
    cli("train", "--recipe", recipe, "--out", run, "--set", "stages.0.max_steps=1", "--quiet") \
        .assert_user_error(*fragments)
    assert _snapshot(tmp_path) == before


def _damage_tensors(name, value):
    def damage(step):
        from safetensors.torch import load_file, save_file

        path = step / "optim.safetensors"
        save_file({**load_file(str(path)), name: value(load_file(str(path))[name])}, str(path))
    return damage


def _damage_state(change):
    def damage(step):
        data = json.loads((step / "state.json").read_text())
        change(data)
        (step / "state.json").write_text(json.dumps(data))
    return damage


def _move_a_param(data):
    first, second = data["optimizer"]["param_groups"]
    first["params"].append(second["params"].pop())


@pytest.mark.parametrize(("damage", "step", "fragments"), [
    (_damage_state(lambda d: d.update(step=3)), 2, ["step-00000002 is at step 3, past this run's last step 2"]),
    (_damage_tensors("rng.torch", lambda t: t[:100]), 1, ["step-00000001: its RNG state does not load"]),
    (_damage_tensors("state.0.momentum_buffer", lambda t: t.flatten()[:1]), 1,
     ["step-00000001: optimizer state 'momentum_buffer' has shape (1,)"]),
    (_damage_state(_move_a_param), 1, ["step-00000001: its optimizer state does not fit this recipe's optimizer"]),
], ids=["step-past-the-end", "rng-length", "momentum-shape", "groups-changed"])
def test_a_checkpoint_that_does_not_fit_the_run_is_one_line(cli, tmp_path, damage, step, fragments):
    recipe = _recipe(tmp_path)
    run = tmp_path / "run"
    cli("train", "--recipe", recipe, "--out", run, "--quiet")  # 2 steps, a checkpoint after each
    shutil.rmtree(run / "bundle")
    if step == 1:
        shutil.rmtree(run / "checkpoints" / "step-00000002")
    damage(run / "checkpoints" / f"step-{step:08d}")
    checkpoints = _snapshot(run / "checkpoints")
    cli("train", "--recipe", recipe, "--out", run, "--quiet").assert_user_error(*fragments)
    assert _snapshot(run / "checkpoints") == checkpoints and not (run / "bundle").exists()


def test_run_json_of_another_recipe_names_the_difference(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"digest": "0" * 16, "recipe": {"seed": 5}}))
    cli("train", "--recipe", _recipe(tmp_path), "--out", run, "--quiet").assert_user_error(
        "holds a run of another recipe", "it differs in")


def test_a_missing_or_unknown_depthwise_backend_is_one_line_before_anything_is_written(cli, tmp_path, monkeypatch):
    from ofakit.supernet import depthwise

    recipe = _recipe(tmp_path)
    before = _snapshot(tmp_path)
    cli("train", "--recipe", recipe, "--out", tmp_path / "run", "--set", "depthwise_grad=mkl", "--quiet") \
        .assert_user_error("depthwise_grad 'mkl' is not a backend; choices: auto, numba, onednn")
    monkeypatch.setattr(depthwise, "numba_available", lambda: False)
    cli("train", "--recipe", recipe, "--out", tmp_path / "run", "--set", "depthwise_grad=numba", "--quiet") \
        .assert_user_error("depthwise_grad is 'numba' but numba is not installed", "pip install 'ofakit[cpu-train]'")
    assert _snapshot(tmp_path) == before

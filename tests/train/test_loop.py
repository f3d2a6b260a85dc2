"""Training end to end on the tiny space: progressive shrinking and sandwich runs, kill -9 + resume (bitwise), and
refusals (several processes: test_distributed.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ofakit.bundle import load_bundle
from ofakit.errors import ConfigError
from ofakit.space import get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.train.config import recipe_from_dict
from ofakit.train.loop import TrainingError, run_training

REPO = Path(__file__).resolve().parents[2]


def tiny_recipe(**changes) -> dict:
    recipe = {
        "space": "tiny", "data": "digits", "seed": 1, "batch_size": 32, "base_batch_size": 32, "augment": True,
        "dropout": 0.1, "checkpoint_every": 2, "eval_batch_size": 128, "eval_max_batches": 1,
        "recalibration_batches": 1, "eval_random_subnets": 0,
        "stages": [
            {"name": "full", "sampler": "largest", "epochs": 1, "lr": 0.1, "max_steps": 4},
            {"name": "kernel", "epochs": 1, "lr": 0.05, "kernel": [3, 5, 7], "expand": [4], "depth": [2],
             "kd_weight": 1.0, "max_steps": 3},
            {"name": "expand", "epochs": 1, "lr": 0.05, "subnets_per_step": 2, "kd_weight": 1.0, "max_steps": 3},
        ],
    }
    recipe.update(changes)
    return recipe


def test_progressive_shrinking_run_makes_a_bundle(tmp_path):
    bundle, net = run_training(recipe_from_dict(tiny_recipe()), tmp_path / "run", progress=False)
    loaded, info = load_bundle(bundle)
    assert info.space == "tiny" and info.dataset == "digits" and info.training["steps"] == 10
    assert set(info.metrics) == {"largest", "smallest"} and 0 <= info.metrics["largest"]["top1"] <= 1
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-00000004", "step-00000007", "step-00000008", "step-00000010"]  # stage ends, last two
    assert (tmp_path / "run" / "teacher.safetensors").is_file()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum('"eval"' in line for line in lines) == 3
    for key, value in net.state_dict().items():
        assert torch.equal(value.cpu(), loaded.state_dict()[key]), key


def test_sandwich_and_uniform_runs(tmp_path):
    recipe = tiny_recipe(grad_clip=1.0, stages=[
        {"name": "sandwich", "sampler": "sandwich", "epochs": 1, "lr": 0.05, "subnets_per_step": 1,
         "kd_temperature": 2.0, "max_steps": 3},
        {"name": "spos", "sampler": "uniform", "epochs": 1, "lr": 0.05, "max_steps": 2}])
    before = None
    bundle, net = run_training(recipe_from_dict(recipe), tmp_path / "run", progress=False)
    assert load_bundle(bundle)[1].training["steps"] == 5
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert before is None


def test_training_learns_on_digits(tmp_path):
    recipe = tiny_recipe(augment=False, dropout=0.0, eval_max_batches=None, recalibration_batches=4,
                         stages=[{"name": "full", "sampler": "largest", "epochs": 3, "lr": 0.2}])
    bundle, _ = run_training(recipe_from_dict(recipe), tmp_path / "run", progress=False)
    assert load_bundle(bundle)[1].metrics["largest"]["top1"] > 0.8


def _cli(recipe_path: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "ofakit", "train", "--recipe", str(recipe_path), "--out",
                             str(out), "--quiet"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


KILL_AT = """
import os, sys
from ofakit.train.config import load_recipe
from ofakit.train.loop import train


def kill(step):
    if step == int(sys.argv[3]):
        os.kill(os.getpid(), 9)


train(load_recipe(sys.argv[1]), sys.argv[2], recipe_name=os.path.basename(sys.argv[1]), progress=False,
      on_step=kill)
"""


def _killed_at(step: int, recipe_path: Path, out: Path) -> subprocess.Popen:
    """A training run in a child process that kills itself (SIGKILL) right after optimizer step `step`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", KILL_AT, str(recipe_path), str(out), str(step)], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "bundle" / "supernet.safetensors"))


def test_kill_9_and_resume_gives_bitwise_equal_weights(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    reference = _cli(recipe, tmp_path / "ref")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    # killed between checkpoints (after step 9 of 10, last checkpoint at 8), in the middle of a distilled stage (the
    # resumed run builds its teacher again: that must not shift the random state its dropout draws from)
    killed = _killed_at(9, recipe, tmp_path / "run")
    assert killed.wait(timeout=300) == -signal.SIGKILL, killed.stderr.read()
    assert not (tmp_path / "run" / "bundle").exists()
    resumed = _cli(recipe, tmp_path / "run")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err

    # killed from outside at whatever moment the first checkpoint appears
    other = _cli(recipe, tmp_path / "run2")
    deadline = time.time() + 120
    while not (tmp_path / "run2" / "checkpoints").exists() and time.time() < deadline and other.poll() is None:
        time.sleep(0.02)
    other.send_signal(signal.SIGKILL)
    other.wait(timeout=60)
    again = _cli(recipe, tmp_path / "run2")
    assert again.wait(timeout=300) == 0, again.stderr.read()

    ref = _final_weights(tmp_path / "ref")
    for run in ("run", "run2"):
        got = _final_weights(tmp_path / run)
        assert got.keys() == ref.keys()
        assert all(torch.equal(got[k], ref[k]) for k in ref), f"{run}: weights differ from the uninterrupted run"


def test_a_resumed_run_logs_each_step_once(tmp_path):
    """A run stopped after step 9 (last checkpoint at 8) and resumed: its metrics hold each step once, the same steps
    and losses as an uninterrupted run's."""
    cfg = recipe_from_dict(tiny_recipe())
    run_training(cfg, tmp_path / "ref", progress=False, log_every=1)

    def stop_at_9(step: int) -> None:
        if step == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "run", progress=False, log_every=1, on_step=stop_at_9)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 9, "stage": "expa')  # a line torn by a kill
    run_training(cfg, tmp_path / "run", progress=False, log_every=1)

    def losses(run: str) -> list[tuple[int, float]]:
        lines = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in lines if "loss" in r]

    ref, got = losses("ref"), losses("run")
    assert [s for s, _ in got] == [s for s, _ in ref] == list(range(1, 11))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in ref])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_at_a_checkpoint_of_its_step(tmp_path, signum, capsys):
    """SIGTERM (a `timeout` wrapper, a scheduler) or Ctrl-C during step 5 (checkpoints every 2): the step ends, its
    checkpoint is written, the run stops (KeyboardInterrupt) and puts the handlers back; resumed, it ends with the
    uninterrupted run's weights."""
    cfg = recipe_from_dict(tiny_recipe())
    _, ref = run_training(cfg, tmp_path / "ref", progress=False)
    before = signal.getsignal(signum)

    def signal_at_5(step: int) -> None:
        if step == 5:
            os.kill(os.getpid(), signum)

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "run", progress=False, on_step=signal_at_5)
    assert signal.getsignal(signum) is before
    assert (tmp_path / "run" / "checkpoints" / "step-00000005").is_dir()
    assert f"stopped by {signum.name} after step 5 of 10" in capsys.readouterr().err
    _, got = run_training(cfg, tmp_path / "run", progress=False)
    assert all(torch.equal(got.state_dict()[k], v) for k, v in ref.state_dict().items())


def test_a_second_signal_stops_the_run_at_once(tmp_path):
    """Ctrl-C twice in step 5: no waiting for the checkpoint; the last one is step 4's."""
    def twice_at_5(step: int) -> None:
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run_training(recipe_from_dict(tiny_recipe()), tmp_path / "run", progress=False, on_step=twice_at_5)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())[-1] == "step-00000004"


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="no SIGSTOP/SIGCONT on this platform")
def test_a_stopped_run_does_not_count_the_stop_as_training(tmp_path):
    """Stopped for 2 s inside a step (as `kill -STOP`, then `kill -CONT`, or Ctrl-Z and `fg`): the bundle's and the
    checkpoints' train_seconds leave the stop out."""
    def stop_once(step: int) -> None:
        if step == 5:
            subprocess.Popen(["sh", "-c", f"sleep 2; kill -CONT {os.getpid()}"])
            os.kill(os.getpid(), signal.SIGSTOP)

    started = time.perf_counter()
    bundle, _ = run_training(recipe_from_dict(tiny_recipe()), tmp_path / "run", progress=False, on_step=stop_once)
    wall = time.perf_counter() - started
    _, info = load_bundle(bundle)
    assert wall > 2.0 and info.training["train_seconds"] < wall - 1.5


def test_refusals(tmp_path):
    cfg = recipe_from_dict(tiny_recipe(stages=[{"name": "a", "sampler": "largest", "epochs": 1, "max_steps": 1}]))
    run_training(cfg, tmp_path / "run", progress=False)
    other = recipe_from_dict(tiny_recipe(seed=2, stages=[{"name": "a", "sampler": "largest", "max_steps": 1}]))
    with pytest.raises(TrainingError, match="holds a run of another recipe"):
        run_training(other, tmp_path / "run", progress=False)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="not empty and holds no ofakit run"):
        run_training(cfg, tmp_path / "foreign", progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        run_training(recipe_from_dict(tiny_recipe(data=str(tmp_path / "nope.npz"))), tmp_path / "x", progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe = tiny_recipe(checkpoint_every=1, stages=[
        {"name": "ok", "sampler": "largest", "epochs": 1, "lr": 0.01, "max_steps": 2},
        {"name": "boom", "sampler": "largest", "epochs": 1, "lr": 1.0e30, "max_steps": 5}])
    with pytest.raises(TrainingError, match="loss became (nan|inf).*last good checkpoint"):
        run_training(recipe_from_dict(recipe), tmp_path / "run", progress=False)
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts and all(torch.isfinite(v.float()).all()
                         for v in load_file(str(tmp_path / "run" / "checkpoints" / ckpts[-1] / "model.safetensors"))
                         .values())


def test_channels_are_sorted_where_the_first_smaller_expand_ratio_opens():
    from ofakit.space import get_space
    from ofakit.train.config import load_recipe
    from ofakit.train.schedule import opens_smaller_expand, plan_stages

    repo = Path(__file__).resolve().parents[2]
    cfg = load_recipe(repo / "recipes" / "ofa-mbv3-cifar10-cpu90.yaml")
    plans = plan_stages(cfg, steps_per_epoch=10)
    opened = [p.stage.name for i, p in enumerate(plans) if opens_smaller_expand(get_space(cfg.space), plans, i)]
    assert opened == ["expand-1"]  # not the full network's stage, which trains the largest subnet only
    sandwich = load_recipe(repo / "recipes" / "bignas-mbv3-cifar10.yaml")
    splans = plan_stages(sandwich, steps_per_epoch=10)
    assert [opens_smaller_expand(get_space(sandwich.space), splans, i) for i in range(len(splans))][0] is True


def test_a_run_starts_from_another_runs_checkpoint_and_distils_the_largest(tmp_path):
    first = tiny_recipe(stages=[{"name": "full", "sampler": "largest", "epochs": 1, "lr": 0.1, "max_steps": 4}])
    run_training(recipe_from_dict(first), tmp_path / "a", progress=False)
    checkpoint = tmp_path / "a" / "checkpoints" / "step-00000004"
    start = load_file(str(checkpoint / "model.safetensors"))
    second = tiny_recipe(init=str(checkpoint), cutout=3, stages=[
        {"name": "again", "sampler": "largest", "epochs": 1, "lr": 0.0, "kd_weight": 1.0, "max_steps": 1}])
    bundle, _ = run_training(recipe_from_dict(second), tmp_path / "b", progress=False)
    # lr 0: one step changes no weight, so the run began from the checkpoint's (BN statistics do move)
    weights = load_bundle(bundle)[0].state_dict()
    assert all(torch.equal(weights[k], v) for k, v in start.items() if "running" not in k and "num_batches" not in k)
    # the largest stage with kd_weight made a teacher: the checkpoint's full network, BN recalibrated
    from tests.train.test_distill import recalibrated_largest

    teacher = load_file(str(tmp_path / "b" / "teacher.safetensors"))
    supernet = build_supernet(get_space("tiny"), num_classes=10)
    supernet.load_state_dict(start)
    expected = recalibrated_largest(supernet, recipe_from_dict(second)).state_dict()
    assert teacher.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(teacher[k], expected[k], rtol=1e-4, atol=1e-5)  # channels_last there
    stored = extract_subnet(supernet, get_space("tiny").largest()).state_dict()  # the checkpoint's own statistics
    assert any(not torch.allclose(teacher[k], stored[k]) for k in stored if k.endswith("running_mean"))


def test_the_recipes_augment_policy_reaches_the_training_batches(tmp_path, monkeypatch):
    import ofakit.train.data as data

    calls = []
    real = data.trivial_augment

    def counted(x, gen, fill):
        calls.append(x.shape[0])
        return real(x, gen, fill)

    monkeypatch.setattr(data, "trivial_augment", counted)
    stages = [{"name": "full", "sampler": "largest", "epochs": 1, "lr": 0.1, "max_steps": 2}]
    cfg = recipe_from_dict(tiny_recipe(augment_policy="trivialaugment", stages=stages))
    bundle, _ = run_training(cfg, tmp_path / "b", progress=False)
    assert calls == [cfg.batch_size, cfg.batch_size]  # the two steps' batches; never an evaluation's
    assert json.loads((tmp_path / "b" / "run.json").read_text())["recipe"]["augment_policy"] == "trivialaugment"


def test_evaluations_within_a_stage_are_logged_checkpointed_and_change_no_weight(tmp_path):
    """`eval_every_epochs: 1` on 2-step epochs (1,437 digits, batch 512): an evaluation and a checkpoint after each
    epoch; the weights, the losses and the bundle's (stage-end) metrics stay those of a run evaluated at stage ends
    only."""
    stages = [{"name": "full", "sampler": "largest", "epochs": 3, "lr": 0.1},
              {"name": "kernel", "epochs": 2, "lr": 0.05, "kernel": [3, 5, 7], "expand": [4], "depth": [2],
               "kd_weight": 1.0}]
    recipe = tiny_recipe(batch_size=512, base_batch_size=512, checkpoint_every=100, stages=stages)
    runs = {}
    for every in (0, 1):
        run = tmp_path / f"every{every}"
        run_training(recipe_from_dict({**recipe, "eval_every_epochs": every}), run, progress=False, log_every=1)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        runs[every] = run, [r for r in rows if "eval" in r], [(r["step"], r["loss"]) for r in rows if "loss" in r]
    (plain, plain_evals, plain_losses), (often, evals, losses) = runs[0], runs[1]
    assert [(r["stage"], r["step"], r["epochs_done"], r["stage_end"]) for r in plain_evals] == [
        ("full", 6, 3, True), ("kernel", 10, 2, True)]
    assert [(r["stage"], r["step"], r["epochs_done"], r["stage_end"]) for r in evals] == [
        ("full", 2, 1, False), ("full", 4, 2, False), ("full", 6, 3, True), ("kernel", 8, 1, False),
        ("kernel", 10, 2, True)]
    assert [r["eval"] for r in evals if r["stage_end"]] == [r["eval"] for r in plain_evals]
    assert losses == plain_losses
    ckpts = {run: sorted(p.name for p in (run / "checkpoints").iterdir()) for run in (plain, often)}
    assert ckpts[plain] == ["step-00000006", "step-00000010"]  # stage ends only (checkpoint_every 100)
    assert ckpts[often] == ["step-00000006", "step-00000008", "step-00000010"]  # + an evaluation's (last two kept)
    ref, got = _final_weights(plain), _final_weights(often)
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    assert load_bundle(often / "bundle")[1].metrics == load_bundle(plain / "bundle")[1].metrics == evals[-1]["eval"]


def test_init_checkpoint_of_another_space_or_outside_a_run_is_refused(tmp_path):
    run_training(recipe_from_dict(tiny_recipe(stages=[
        {"name": "full", "sampler": "largest", "epochs": 1, "lr": 0.1, "max_steps": 2}])), tmp_path / "a",
        progress=False)
    checkpoint = tmp_path / "a" / "checkpoints" / "step-00000002"
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    record["recipe"]["space"] = "ofa-mbv3-cifar"
    (tmp_path / "a" / "run.json").write_text(json.dumps(record))
    recipe = recipe_from_dict(tiny_recipe(init=str(checkpoint)))
    with pytest.raises(ConfigError, match="from a run of space 'ofa-mbv3-cifar', the recipe trains 'tiny'"):
        run_training(recipe, tmp_path / "b", progress=False)
    (tmp_path / "a" / "run.json").unlink()
    with pytest.raises(ConfigError, match="looks like a checkpoint, but .*run.json is missing"):
        run_training(recipe, tmp_path / "c", progress=False)


@pytest.mark.parametrize("numba", [True, False])
def test_a_cpu_run_says_when_depthwise_gradients_run_slow_for_want_of_numba(tmp_path, monkeypatch, capsys, numba):
    from ofakit.supernet import depthwise

    monkeypatch.setattr(depthwise, "numba_available", lambda: numba)
    recipe = tiny_recipe(stages=[{"name": "full", "sampler": "largest", "epochs": 1, "lr": 0.1, "max_steps": 1}])
    run_training(recipe_from_dict(recipe), tmp_path / "run", progress=True)
    said = "depthwise 5x5/7x7 weight gradients run on oneDNN: install numba" in capsys.readouterr().out
    assert said is not numba

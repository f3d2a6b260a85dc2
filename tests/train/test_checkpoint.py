"""Checkpoints: what is saved comes back (weights, momentum, RNG, state), the newest two and each stage's last are
kept, a write cut short is never taken for a checkpoint, and a damaged one is one error line naming it."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors import safe_open
from torch import nn

from ofakit.errors import BundleError, ConfigError
from ofakit.train.checkpoint import (KEEP, CheckpointState, load_checkpoint, restore_optimizer, restore_rng,
                                     save_checkpoint)
from ofakit.train.run_dir import list_checkpoints


def _model_and_optimizer(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 3, 6, 6))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    return model, optimizer


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        loss = model(torch.randn(4, 3, 6, 6)).square().mean()  # draws from the global RNG, like augmentation
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_a_checkpoint_resumes_to_the_very_same_weights(tmp_path):
    model, optimizer = _model_and_optimizer()
    _train(model, optimizer, 3)
    state = CheckpointState(step=3, stage="full", digest="abc", train_seconds=1.5, eval={"largest": {"top1": 0.5}})
    path = save_checkpoint(tmp_path, model, optimizer, state)
    _train(model, optimizer, 2)  # the uninterrupted run goes on

    ckpt = load_checkpoint(path)
    assert ckpt.step == 3 and ckpt.state.stage == "full" and ckpt.state.digest == "abc"
    assert ckpt.state.train_seconds == 1.5 and ckpt.state.eval == {"largest": {"top1": 0.5}}
    resumed, resumed_opt = _model_and_optimizer(seed=1)  # other starting weights: all must come from the file
    resumed.load_state_dict(ckpt.model)
    resumed_opt.load_state_dict(ckpt.optimizer)
    torch.set_rng_state(ckpt.rng_state)
    _train(resumed, resumed_opt, 2)
    for key, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_the_state_file_format(tmp_path):
    model, optimizer = _model_and_optimizer()
    _train(model, optimizer, 1)
    path = save_checkpoint(tmp_path, model, optimizer, CheckpointState(step=7, stage="s", digest="d"))
    assert path == tmp_path / "checkpoints" / "step-00000007"
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "optim.safetensors", "state.json"]
    data = json.loads((path / "state.json").read_text())
    assert list(data) == ["stage", "digest", "train_seconds", "eval", "step", "optimizer"]
    assert list(data["optimizer"]) == ["param_groups", "state"]
    assert data["optimizer"]["param_groups"][0]["momentum"] == 0.9
    assert data["optimizer"]["state"] == {str(i): {} for i in range(len(list(model.parameters())))}
    assert load_checkpoint(save_checkpoint(tmp_path, model, None, CheckpointState(step=8))).optimizer is None
    assert load_checkpoint(path).cuda_rng_state is None  # a CPU run's checkpoint has no GPU generator
    assert "rng.cuda" not in safe_open(str(path / "optim.safetensors"), "pt").keys()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (its RNG state is saved on GPU runs)")
def test_a_gpu_run_resumes_with_the_same_dropout_masks(tmp_path):
    def make(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(16, 64), nn.Dropout(0.5), nn.Linear(64, 2)).cuda()
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
        for _ in range(steps):  # the dropout masks come from the GPU's generator
            model(torch.ones(8, 16, device="cuda")).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()

    model, optimizer = make(0)
    train(model, optimizer, 3)
    path = save_checkpoint(tmp_path, model, optimizer, CheckpointState(step=3), device="cuda")
    train(model, optimizer, 2)
    ckpt = load_checkpoint(path)
    assert ckpt.cuda_rng_state is not None
    resumed, resumed_opt = make(1)
    resumed.load_state_dict(ckpt.model)
    resumed_opt.load_state_dict(ckpt.optimizer)
    torch.cuda.set_rng_state(ckpt.cuda_rng_state)
    train(resumed, resumed_opt, 2)
    for key, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_only_the_newest_are_kept_and_cut_writes_are_ignored(tmp_path):
    model, optimizer = _model_and_optimizer()
    for step in (1, 2, 3, 10):
        save_checkpoint(tmp_path, model, optimizer, CheckpointState(step=step))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000010"][-KEEP:]
    root = tmp_path / "checkpoints"
    (root / ".step-00000011.tmp").mkdir()  # a write killed before its rename
    (root / "step-00000012").mkdir()  # no state.json: not complete
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000010"]
    save_checkpoint(tmp_path, model, optimizer, CheckpointState(step=11))
    assert not (root / ".step-00000011.tmp").exists()
    assert list_checkpoints(tmp_path)[-1].name == "step-00000011"
    assert list_checkpoints(tmp_path / "nothing-here") == []


def test_checkpoint_files_get_the_permissions_open_would(tmp_path):
    model, optimizer = _model_and_optimizer()
    path = save_checkpoint(tmp_path, model, optimizer, CheckpointState(step=1))
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "optim.safetensors", "state.json"):
        assert (path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_the_last_checkpoint_of_each_stage_is_kept(tmp_path):
    model, optimizer = _model_and_optimizer()
    for step, stage in ((2, "full"), (4, "full"), (6, "kernel"), (7, "kernel"), (9, "depth"), (10, "depth"),
                        (12, "depth")):
        save_checkpoint(tmp_path, model, optimizer, CheckpointState(step=step, stage=stage))
    names = [p.name for p in list_checkpoints(tmp_path)]
    # the stage ends 4 (full) and 7 (kernel), and the newest KEEP = 2
    assert KEEP == 2 and names == ["step-00000004", "step-00000007", "step-00000010", "step-00000012"]


def _edit_state(path, **changes):
    data = json.loads((path / "state.json").read_text())
    for key, change in changes.items():
        data[key] = change(data[key]) if callable(change) else change
    (path / "state.json").write_text(json.dumps(data))


def _cut_params(optimizer):
    groups = [dict(g) for g in optimizer["param_groups"]]
    groups[-1]["params"] = groups[-1]["params"][:-1]
    return {**optimizer, "param_groups": groups}


def _edit_tensors(path, **tensors):
    from safetensors.torch import load_file, save_file

    save_file({**load_file(str(path / "optim.safetensors")), **tensors}, str(path / "optim.safetensors"))


@pytest.fixture
def checkpoint(tmp_path):
    model, optimizer = _model_and_optimizer()
    _train(model, optimizer, 1)
    return save_checkpoint(tmp_path, model, optimizer, CheckpointState(step=1))


@pytest.mark.parametrize(("damage", "error", "message"), [
    (lambda p: (p / "model.safetensors").write_bytes(pickle.dumps({"w": 1})), BundleError,
     "is a pickle / torch.save file, not safetensors"),
    (lambda p: (p / "optim.safetensors").write_bytes((p / "optim.safetensors").read_bytes()[:40]), BundleError,
     "cannot read checkpoint"),
    (lambda p: (p / "model.safetensors").unlink(), BundleError, "cannot read"),
    (lambda p: (p / "state.json").write_text("{"), ConfigError, "state.json: not a checkpoint state file"),
    (lambda p: (p / "state.json").write_text('{"step": 1, "stage": 2}'), ConfigError,
     "checkpoint state: stage: expected a string, got 2"),
    (lambda p: (p / "state.json").write_text('{"step": 1, "optimizer": {"param_groups": [], "state": {"x": {}}}}'),
     BundleError, "malformed optimizer state"),
    (lambda p: _edit_state(p, step=-1), BundleError, r"step -1 in state.json is negative"),
    (lambda p: _edit_tensors(p, **{"rng.torch": torch.zeros(5056)}), BundleError,
     r"'rng.torch' in optim.safetensors is not an RNG state \(a 1-D uint8 tensor\); got float32 \(5056,\)"),
    (lambda p: _edit_tensors(p, **{"rng.cuda": torch.zeros(2, 8, dtype=torch.uint8)}), BundleError,
     r"'rng.cuda' .* is not an RNG state .*; got uint8 \(2, 8\)"),
    (lambda p: _edit_state(p, optimizer=_cut_params), BundleError,
     r"malformed optimizer state \(state of parameter\(s\) \[5\] that no param_groups entry holds\)"),
    (lambda p: _edit_state(p, optimizer=lambda o: {**o, "param_groups": [{"params": [0, 0]}]}), BundleError,
     r"malformed optimizer state \(a parameter index appears twice"),
], ids=["pickle", "truncated", "missing-weights", "state-not-json", "state-wrong-type", "optimizer-index",
        "negative-step", "rng-dtype", "cuda-rng-shape", "params-cut", "params-twice"])
def test_a_damaged_checkpoint_is_one_error_naming_it(checkpoint, damage, error, message):
    damage(checkpoint)
    with pytest.raises(error, match=message):
        load_checkpoint(checkpoint)


def test_a_checkpoint_that_does_not_fit_the_optimizer_or_generator_is_one_error_naming_it(checkpoint):
    """What load_checkpoint cannot see without the run's model: checked as the state goes into the optimizer and
    the generator (torch would fail at the next step, or with a bare TypeError)."""
    ckpt = load_checkpoint(checkpoint)
    model, optimizer = _model_and_optimizer()
    restore_optimizer(checkpoint, optimizer, ckpt.optimizer)  # the same model: fits
    _edit_tensors(checkpoint, **{"state.0.momentum_buffer": torch.zeros(1)})
    with pytest.raises(BundleError, match=r"step-00000001: optimizer state 'momentum_buffer' has shape \(1,\), its "
                                          r"parameter \(4, 3, 3, 3\)"):
        restore_optimizer(checkpoint, _model_and_optimizer()[1], load_checkpoint(checkpoint).optimizer)
    smaller = torch.optim.SGD(list(model.parameters())[:-1], lr=0.1, momentum=0.9)
    with pytest.raises(BundleError, match=r"step-00000001: its optimizer state does not fit this recipe's optimizer"):
        restore_optimizer(checkpoint, smaller, ckpt.optimizer)
    ckpt.rng_state = ckpt.rng_state[:100]
    with pytest.raises(BundleError, match=r"step-00000001: its RNG state does not load"):
        restore_rng(checkpoint, ckpt, torch.device("cpu"))

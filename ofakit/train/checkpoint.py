"""Training checkpoints: safetensors for weights and optimizer state, JSON for the rest; atomic; last two kept.

    RUN_DIR/checkpoints/step-00000200/
      model.safetensors   supernet state dict
      optim.safetensors   optimizer tensors (momentum buffers) and the torch RNG state
      state.json          step, stage, recipe digest, optimizer hyper-parameters, metrics so far

A checkpoint directory is written under a temporary name and renamed when complete, so a kill -9 at any moment
leaves either the previous checkpoints or a complete new one.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ofakit.bundle import check_safetensors
from ofakit.errors import BundleError

KEEP = 2


@dataclass
class Checkpoint:
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    rng_state: torch.Tensor
    state: dict[str, Any]


def _optimizer_tensors(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": opt_state["param_groups"], "state": {}}
    for index, entry in opt_state["state"].items():
        plain["state"][str(index)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(index)][key] = value
    return tensors, plain


def _optimizer_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any]) -> Path:
    """Write checkpoint `step` atomically and delete all but the newest KEEP checkpoints."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    plain_opt = None
    if optimizer is not None:
        opt_tensors, plain_opt = _optimizer_tensors(optimizer.state_dict())
        tensors.update(opt_tensors)
    save_file(tensors, str(tmp / "optim.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "optimizer": plain_opt}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / "state.json").is_file())


def load_checkpoint(path: Path) -> Checkpoint:
    for name in ("model.safetensors", "optim.safetensors"):
        check_safetensors(path / name)
    try:
        state = json.loads((path / "state.json").read_text())
        model = load_file(str(path / "model.safetensors"))
        extra = load_file(str(path / "optim.safetensors"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read checkpoint {path}: {exc}") from None
    plain = state.pop("optimizer", None)
    optimizer = _optimizer_state(extra, plain) if plain is not None else None
    return Checkpoint(step=state["step"], model=model, optimizer=optimizer, rng_state=extra["rng.torch"],
                      state=state)

"""Training checkpoints: safetensors for weights and optimizer state, JSON for the rest; atomic; the last two kept,
and the last of every finished stage (where a later run can start from: `init: RUN/checkpoints/step-N`).

    RUN_DIR/checkpoints/step-00000200/
      model.safetensors   supernet state dict
      optim.safetensors   optimizer tensors (momentum buffers), the torch CPU RNG state and, for a run on a GPU,
                          that GPU's RNG state (its dropout masks)
      state.json          step, stage, recipe digest, optimizer hyper-parameters, metrics so far

A checkpoint directory is written under a temporary name and renamed when complete, so a kill -9 at any moment
leaves either the previous checkpoints or a complete new one.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ofakit.bundle import check_safetensors
from ofakit.errors import BundleError
from ofakit.io import open_permissions, read_json_file
from ofakit.schema import build
from ofakit.train.run_dir import list_checkpoints

KEEP = 2


@dataclass(frozen=True)
class OptimizerRecord:
    """The optimizer's state without its tensors (those are in optim.safetensors)."""

    param_groups: list[dict[str, Any]]  # hyper-parameters and parameter indices of each group
    state: dict[str, dict[str, Any]]  # non-tensor values per parameter index


@dataclass(frozen=True)
class CheckpointState:
    """state.json: where the run stands."""

    step: int  # optimizer steps done
    stage: str = ""  # the stage that step belongs to
    digest: str = ""  # the recipe's digest
    train_seconds: float = 0.0  # training time so far, over every resume
    eval: dict[str, Any] = field(default_factory=dict)  # the last stage-end evaluation
    optimizer: OptimizerRecord | None = None


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None  # torch's optimizer state dict
    rng_state: torch.Tensor
    state: CheckpointState
    cuda_rng_state: torch.Tensor | None = None  # the GPU's generator, in checkpoints of runs on one

    @property
    def step(self) -> int:
        return self.state.step


def _optimizer_tensors(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], OptimizerRecord]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entry in opt_state["state"].items():
        plain[str(index)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[str(index)][key] = value
    return tensors, OptimizerRecord(param_groups=opt_state["param_groups"], state=plain)


def _optimizer_state(tensors: dict[str, torch.Tensor], plain: OptimizerRecord) -> dict[str, Any]:
    """torch's optimizer state dict from a checkpoint's parts; a ValueError when its groups' parameter indices are
    not distinct integers, or when a state belongs to no parameter of theirs."""
    params: list[int] = []
    for i, group in enumerate(plain.param_groups):
        indices = group.get("params")
        if not isinstance(indices, list) or any(isinstance(p, bool) or not isinstance(p, int) for p in indices):
            raise ValueError(f"param_groups[{i}]: 'params' must be a list of parameter indices")
        params += indices
    if len(set(params)) != len(params):
        raise ValueError("a parameter index appears twice in param_groups")
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain.state.items()}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    strays = sorted(set(state) - set(params))
    if strays:
        raise ValueError(f"state of parameter(s) {strays[:3]} that no param_groups entry holds")
    return {"state": state, "param_groups": [dict(g) for g in plain.param_groups]}


def _check_rng(path: Path, extra: dict[str, torch.Tensor], key: str) -> torch.Tensor | None:
    """The RNG state `key` of optim.safetensors (None when absent): torch's generators take a 1-D uint8 tensor."""
    rng = extra.get(key)
    if rng is not None and (rng.dtype != torch.uint8 or rng.dim() != 1):
        raise BundleError(f"checkpoint {path}: {key!r} in optim.safetensors is not an RNG state (a 1-D uint8 tensor); "
                          f"got {str(rng.dtype).replace('torch.', '')} {tuple(rng.shape)}")
    return rng


def restore_rng(path: Path, ckpt: Checkpoint, device: torch.device) -> None:
    """Set torch's CPU generator, and `device`'s when it is a GPU and the checkpoint holds its state, to the
    checkpoint's; a state the generator refuses is one BundleError naming the checkpoint."""
    try:
        torch.set_rng_state(ckpt.rng_state)
        if device.type == "cuda" and ckpt.cuda_rng_state is not None:  # the GPU's dropout masks go on too (a CPU
            torch.cuda.set_rng_state(ckpt.cuda_rng_state, device)  # checkpoint leaves the seed's state)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise BundleError(f"checkpoint {path}: its RNG state does not load ({str(exc).splitlines()[0]})") from None


def restore_optimizer(path: Path, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer state into `optimizer` (the recipe's, over the supernet's parameters): groups,
    parameter counts and each state tensor's shape must fit, else one BundleError naming the checkpoint."""
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        raise BundleError(f"checkpoint {path}: its optimizer state does not fit this recipe's optimizer "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise BundleError(f"checkpoint {path}: optimizer state {name!r} has shape {tuple(value.shape)}, "
                                      f"its parameter {tuple(param.shape)}")


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: CheckpointState, device: torch.device | str = "cpu") -> Path:
    """Write checkpoint `state.step` atomically (with the torch RNG state, and `device`'s where it is a GPU) and
    delete the older ones, except the newest KEEP and each stage's last."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    tmp = root / f".step-{state.step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    plain_opt = None
    if optimizer is not None:
        opt_tensors, plain_opt = _optimizer_tensors(optimizer.state_dict())
        tensors.update(opt_tensors)
    save_file(tensors, str(tmp / "optim.safetensors"))
    for name in ("model.safetensors", "optim.safetensors"):
        open_permissions(tmp / name)
    record = {"stage": state.stage, "digest": state.digest, "train_seconds": state.train_seconds,
              "eval": state.eval, "step": state.step, "optimizer": asdict(plain_opt) if plain_opt else None}
    (tmp / "state.json").write_text(json.dumps(record, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    kept = list_checkpoints(run_dir)
    for old, newer in zip(kept[:-KEEP], kept[1:]):
        if _stage_of(old) == _stage_of(newer):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _stage_of(path: Path) -> str | None:
    try:
        return json.loads((path / "state.json").read_text()).get("stage")
    except (OSError, ValueError, AttributeError):
        return None


def load_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint written by `save_checkpoint`; anything else in its place is one BundleError or ConfigError line
    naming the file."""
    state = read_json_file(path / "state.json", "a checkpoint state file",
                           build=lambda data: build(CheckpointState, data, "checkpoint state"))
    for name in ("model.safetensors", "optim.safetensors"):
        check_safetensors(path / name)
    try:
        model = load_file(str(path / "model.safetensors"))
        extra = load_file(str(path / "optim.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise BundleError(f"cannot read checkpoint {path}: {exc}") from None
    if state.step < 0:
        raise BundleError(f"checkpoint {path}: step {state.step} in state.json is negative")
    if "rng.torch" not in extra:
        raise BundleError(f"checkpoint {path}: optim.safetensors holds no RNG state ('rng.torch')")
    rng, cuda_rng = _check_rng(path, extra, "rng.torch"), _check_rng(path, extra, "rng.cuda")
    try:
        optimizer = _optimizer_state(extra, state.optimizer) if state.optimizer is not None else None
    except ValueError as exc:
        raise BundleError(f"checkpoint {path}: malformed optimizer state ({exc})") from None
    return Checkpoint(model=model, optimizer=optimizer, rng_state=rng, state=state, cuda_rng_state=cuda_rng)

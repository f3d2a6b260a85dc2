"""Fine-tuning one specialized subnet of a trained supernet (Cai et al., "Once-for-All", ICLR 2020, sec. 4: the
specialized subnets are fine-tuned for 25-75 epochs).

A fine-tuning run is an ordinary training run (`ofakit.train.loop`) whose recipe starts from the bundle's weights
(`init`) and has one stage with the `fixed` sampler: every step trains the chosen subnet at its resolution on the
labels, optionally distilled from the bundle's largest subnet. It shares the loop's checkpoints, resume, metrics
and DDP. Only the supernet's slices that the subnet uses receive gradients; layers it skips stay as they were.
The result is RUN_DIR/bundle (bundle.json records `training.finetuned`) and RUN_DIR/arch.json, which
`ofakit export --bundle RUN_DIR/bundle --arch RUN_DIR/arch.json ...` ships. Reading this module never imports torch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofakit.arch import ArchConfig
from ofakit.bundle import read_bundle_info
from ofakit.errors import ArchError, ConfigError
from ofakit.io import atomic_write_text
from ofakit.train.config import JOIN_TIMEOUT, TrainConfig, apply_override, recipe_from_dict
from ofakit.train.run_dir import check_out_dir, read_run_record

RECIPE_NAME = "finetune"  # the recipe name a fine-tuning run records in RUN_DIR/run.json
STAGE_NAME = "finetune"


@dataclass(frozen=True)
class FinetuneConfig:
    """The settings of a fine-tuning run that have their own flags; the rest are TrainConfig defaults (`--set`)."""

    epochs: int = 25  # OFA fine-tunes its specialized nets for 25-75 epochs
    lr: float = 0.01  # peak learning rate at `batch_size` images per step (scaled with the number of processes)
    warmup_epochs: float = 0.0  # linear warm-up, then cosine decay to zero
    batch_size: int = 64  # images per process per optimizer step
    weight_decay: float = 3e-5
    kd_weight: float = 0.0  # weight of distillation from the bundle's largest subnet (0: labels only)
    kd_temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size}")
        for name in ("lr", "warmup_epochs", "weight_decay", "kd_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.kd_temperature <= 0:
            raise ConfigError(f"kd_temperature must be > 0, got {self.kd_temperature}")


@dataclass(frozen=True)
class FinetuneResult:
    bundle: Path  # RUN_DIR/bundle: the supernet with the subnet's slices fine-tuned
    arch: Path  # RUN_DIR/arch.json: the subnet, for `ofakit export`
    top1: float | None  # the subnet's validation top-1 after the last epoch (after BN recalibration)
    already_finished: bool = False  # the run directory held this finished run: nothing was trained or written
    main: bool = True  # whether this is the main process (the one that reports)


def finetune_recipe(bundle: str | Path, arch: ArchConfig, data: str, cfg: FinetuneConfig = FinetuneConfig(),
                    overrides: Sequence[str] = ()) -> TrainConfig:
    """The training recipe that fine-tunes `arch` of `bundle` on `data`.

    Args:
        bundle: bundle directory whose weights start the run.
        arch: the subnet; must belong to the bundle's space.
        data: a data source (see `ofakit.train.data`) with the bundle's classes.
        cfg: epochs, learning rate and the other fine-tuning settings.
        overrides: `--set key=value` assignments applied to the recipe mapping (e.g. "augment=false",
            "stages.0.max_steps=10").

    Raises:
        BundleError: `bundle` is not a bundle. ArchError: `arch` is not a network of the bundle's space.
        ConfigError: bad settings or overrides.
    """
    info = read_bundle_info(bundle)
    if arch.space != info.space:
        raise ArchError(f"arch is for space {arch.space!r}, but bundle {bundle} holds a supernet of space "
                        f"{info.space!r}; pick a subnet of that space (e.g. ofakit specialize --bundle {bundle})")
    recipe: dict[str, Any] = {
        "space": info.space, "data": data, "init": str(bundle), "seed": cfg.seed,
        "batch_size": cfg.batch_size, "base_batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay,
        "stages": [{"name": STAGE_NAME, "sampler": "fixed", "arch": arch.to_dict(), "epochs": cfg.epochs,
                    "warmup_epochs": cfg.warmup_epochs, "lr": cfg.lr, "kd_weight": cfg.kd_weight,
                    "kd_temperature": cfg.kd_temperature}],
    }
    for assignment in overrides:
        apply_override(recipe, assignment)
    return recipe_from_dict(recipe, where="fine-tuning recipe")


def check_run_dir(run_dir: str | Path) -> None:
    """Refuse a directory that holds a run of another command (e.g. an `ofakit train` run)."""
    run_dir = Path(run_dir)
    check_out_dir(run_dir)
    record = read_run_record(run_dir)
    if record is None:
        return
    name = record.recipe_name
    if name != RECIPE_NAME:
        raise ConfigError(f"{run_dir} holds a training run (recipe {name!r}), not a fine-tuning run; "
                          "pass another --out")


def finetune(recipe: TrainConfig, run_dir: str | Path, *, progress: bool = True,
             on_step: Callable[[int], None] | None = None, join_timeout: float = JOIN_TIMEOUT) -> FinetuneResult:
    """Run (or resume) the fine-tuning `recipe` (from `finetune_recipe`) in `run_dir`; `on_step` and `join_timeout`
    as in `ofakit.train.loop.train`."""
    last = recipe.stages[-1]
    if recipe.init is None or last.arch is None:
        raise ConfigError("a fine-tuning recipe starts from a bundle (init) and ends with a 'fixed' stage; "
                          "build it with finetune_recipe()")
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    from ofakit.train.loop import train

    result = train(recipe, run_dir, recipe_name=RECIPE_NAME, progress=progress, on_step=on_step,
                   join_timeout=join_timeout)
    arch_path = run_dir / "arch.json"
    if result.main and not result.already_finished:
        atomic_write_text(arch_path, last.arch.to_json(indent=2) + "\n")
    top1 = read_bundle_info(result.bundle).metrics.get("subnet", {}).get("top1")
    return FinetuneResult(bundle=result.bundle, arch=arch_path, top1=top1, already_finished=result.already_finished,
                          main=result.main)


__all__ = ["FinetuneConfig", "FinetuneResult", "RECIPE_NAME", "check_run_dir", "finetune", "finetune_recipe"]

"""The training loop: one command walks a recipe's stages (progressive shrinking, sandwich, uniform, or one fixed
subnet when fine-tuning), on one CPU, one GPU, or many GPUs and nodes under `torchrun` (PyTorch DDP), and resumes
from its last checkpoint. A run starts from fresh weights, or from a bundle's (`init`).

Every process draws the same subnets and resolution at each step (from the seed and the step number), so DDP
all-reduces gradients of the same parameters. All subnets of a step run inside one forward of `StepModule`, so DDP
sees one forward and one backward per micro-batch, and parameters unused by the step's subnets are handled by
`find_unused_parameters`.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ofakit.bundle import save_bundle
from ofakit.errors import BundleError, ConfigError
from ofakit.space import SearchSpace, get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.supernet.sort import sort_channels
from ofakit.supernet.static import fold_batchnorm
from ofakit.train.checkpoint import CheckpointState, list_checkpoints, load_checkpoint, save_checkpoint
from ofakit.train.config import StageConfig, TrainConfig
from ofakit.train.data import load_dataset, iterate_batches
from ofakit.train.distill import soft_cross_entropy
from ofakit.train.evaluate import EvalConfig, evaluate_subnet
from ofakit.train.run_dir import RunRecord, TrainingError, check_run_dir, write_run_record
from ofakit.train.sampling import StepPlan, plan_step


_KILL_AT_STEP = int(os.environ["OFAKIT_KILL_AT_STEP"]) if os.environ.get("OFAKIT_KILL_AT_STEP") else None


@dataclass(frozen=True)
class StagePlan:
    stage: StageConfig
    start: int  # global step at which the stage starts
    steps: int
    warmup: int
    steps_per_epoch: int


def plan_stages(cfg: TrainConfig, steps_per_epoch: int) -> list[StagePlan]:
    plans, start = [], 0
    for stage in cfg.stages:
        steps = stage.epochs * steps_per_epoch
        if stage.max_steps is not None:
            steps = min(steps, stage.max_steps)
        warmup = min(steps, round(stage.warmup_epochs * steps_per_epoch))
        plans.append(StagePlan(stage, start, steps, warmup, steps_per_epoch))
        start += steps
    return plans


def learning_rate(plan: StagePlan, local_step: int, scale: float) -> float:
    """Linear warm-up to the stage's peak, then cosine decay to zero."""
    peak = plan.stage.lr * scale
    if local_step < plan.warmup:
        return peak * (local_step + 1) / plan.warmup
    span = max(1, plan.steps - plan.warmup)
    return 0.5 * peak * (1 + math.cos(math.pi * (local_step - plan.warmup) / span))


class StepModule(nn.Module):
    """All subnets of one step in one forward: returns the summed loss (what DDP wraps)."""

    def __init__(self, supernet: nn.Module, teacher: nn.Module | None, label_smoothing: float) -> None:
        super().__init__()
        self.supernet = supernet
        self.teacher = teacher
        self.label_smoothing = label_smoothing

    def forward(self, x: torch.Tensor, y: torch.Tensor, plan: StepPlan, stage: StageConfig) -> torch.Tensor:
        total = x.new_zeros((), dtype=torch.float32)
        first_logits = None
        teacher_logits = None
        for arch, target in zip(plan.archs, plan.targets):
            self.supernet.set_active(arch)
            logits = self.supernet(x)
            if target == "inplace":
                loss = soft_cross_entropy(logits, first_logits, stage.kd_temperature)
            else:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
                if target == "teacher":
                    if teacher_logits is None:
                        with torch.no_grad():
                            teacher_logits = self.teacher(x)
                    loss = loss + stage.kd_weight * soft_cross_entropy(logits, teacher_logits, stage.kd_temperature)
            if first_logits is None:
                first_logits = logits.detach()
            total = total + loss
        return total


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "device": str(device),
            "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _param_groups(model: nn.Module, weight_decay: float, decay_all: bool) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if decay_all or p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _init_state(cfg: TrainConfig, space: SearchSpace, num_classes: int) -> dict[str, torch.Tensor]:
    """The weights of the `init` bundle, checked against the recipe's space and the data's classes."""
    from ofakit.bundle import load_bundle, read_bundle_info

    info = read_bundle_info(cfg.init)
    if info.space != space.name:
        raise ConfigError(f"init bundle {cfg.init} holds a supernet of space {info.space!r}, the recipe trains "
                          f"{space.name!r}")
    if info.num_classes != num_classes:
        raise ConfigError(f"init bundle {cfg.init} classifies {info.num_classes} classes, but data {cfg.data!r} "
                          f"has {num_classes}; start from a bundle trained on this data's classes")
    return load_bundle(cfg.init)[0].state_dict()


def _opens_smaller_expand(space: SearchSpace, plans: list[StagePlan], index: int) -> bool:
    """Whether stage `index` is the first to open an expand ratio below the maximum (OFA sorts channels then)."""
    choices = space.spec.expand_choices

    def opened(stage: StageConfig) -> bool:
        if stage.sampler in ("largest", "fixed"):  # they train the channels they have: nothing smaller opens
            return False
        return stage.sampler in ("sandwich", "uniform") or min(stage.expand or choices) < max(choices)

    return opened(plans[index].stage) and not any(opened(p.stage) for p in plans[:index])


def train(cfg: TrainConfig, run_dir: str | Path, *, recipe_name: str = "", progress: bool = True,
          log_every: int = 10) -> Path:
    """Run (or resume) a training run in `run_dir`; returns the path of the bundle written at the end."""
    return run_training(cfg, run_dir, recipe_name=recipe_name, progress=progress, log_every=log_every)[0]


def run_training(cfg: TrainConfig, run_dir: str | Path, *, recipe_name: str = "", progress: bool = True,
                 log_every: int = 10) -> tuple[Path, nn.Module]:
    """`train`, also returning the trained supernet (on this process)."""
    run_dir = Path(run_dir)
    world, rank, local_rank = _dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
    if cfg.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    elif cfg.device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("recipe asks for device 'cuda' but no CUDA GPU is available; use device: auto or cpu")
        device = torch.device(f"cuda:{local_rank}")
    elif cfg.device == "cpu":
        device = torch.device("cpu")
    else:
        raise ConfigError(f"unknown device {cfg.device!r}; choices: auto, cpu, cuda")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    existing = check_run_dir(run_dir, cfg.digest(), cfg.to_dict()) if rank == 0 else None
    space = get_space(cfg.space)
    train_ds = load_dataset(cfg.data, "train", image_size=cfg.image_size)
    checkpoints = list_checkpoints(run_dir)
    init_state = _init_state(cfg, space, train_ds.num_classes) if cfg.init and not checkpoints else None
    val_ds = load_dataset(cfg.data, "val", image_size=cfg.image_size)
    per_step = cfg.batch_size * world * cfg.grad_accum
    steps_per_epoch = len(train_ds) // per_step
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(train_ds)} training images are fewer than one step's {per_step} "
                          "(batch_size x processes x grad_accum); lower batch_size")
    plans = plan_stages(cfg, steps_per_epoch)
    total_steps = plans[-1].start + plans[-1].steps
    lr_scale = per_step / cfg.base_batch_size if cfg.scale_lr else 1.0
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if existing is None:
            write_run_record(run_dir, RunRecord(digest=cfg.digest(), recipe=cfg.to_dict(), recipe_name=recipe_name,
                                                world_size=world))
    if world > 1:
        dist.barrier()

    torch.manual_seed(cfg.seed)
    supernet = build_supernet(space, num_classes=train_ds.num_classes, dropout=cfg.dropout)
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    supernet = supernet.to(device=device, memory_format=memory)
    step, optimizer_state, train_seconds, last_eval = 0, None, 0.0, {}
    if init_state is not None:
        supernet.load_state_dict(init_state)
    if checkpoints:
        ckpt = load_checkpoint(checkpoints[-1])
        try:
            supernet.load_state_dict(ckpt.model)
        except RuntimeError as exc:
            raise BundleError(f"checkpoint {checkpoints[-1]} does not fit this recipe's supernet: "
                              f"{str(exc).splitlines()[0]}") from None
        torch.set_rng_state(ckpt.rng_state)
        step, optimizer_state = ckpt.step, ckpt.optimizer
        train_seconds, last_eval = ckpt.state.train_seconds, ckpt.state.eval
        if rank == 0 and progress:
            print(f"resuming {run_dir} at step {step} of {total_steps}")

    teacher: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.bf16 \
        else torch.autocast("cpu", enabled=False)
    eval_cfg = EvalConfig(batch_size=cfg.eval_batch_size, max_batches=cfg.eval_max_batches,
                          recalibration_batches=cfg.recalibration_batches, seed=cfg.seed)
    bar = _Progress(total_steps, step, enabled=progress and rank == 0)
    metrics_log = run_dir / "metrics.jsonl"
    board = _tensorboard(run_dir) if rank == 0 else None
    started = time.perf_counter()
    images_seen, window_start = 0, time.perf_counter()
    model: nn.Module | None = None
    batches_key: tuple[int, int] | None = None

    try:
        while step < total_steps:
            index = next(i for i, p in enumerate(plans) if p.start <= step < p.start + p.steps)
            plan = plans[index]
            local = step - plan.start
            if optimizer is None or local == 0:
                if local == 0 and cfg.sort_channels and _opens_smaller_expand(space, plans, index):
                    sort_channels(supernet)
                if plan.stage.kd_weight > 0 and teacher is None:
                    teacher = _teacher(cfg, run_dir, supernet, space, device, memory, rank, world)
                step_module = StepModule(supernet, teacher, cfg.label_smoothing)
                model = step_module
                if world > 1:
                    model = nn.parallel.DistributedDataParallel(
                        step_module, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=True)
                optimizer = torch.optim.SGD(_param_groups(supernet, cfg.weight_decay, cfg.decay_bn_and_bias),
                                            lr=0.0, momentum=cfg.momentum, nesterov=cfg.nesterov)
                if optimizer_state is not None and local > 0:
                    optimizer.load_state_dict(optimizer_state)
                optimizer_state = None
            epoch, batch_in_epoch = divmod(local, plan.steps_per_epoch)
            if batches_key != (index, epoch):
                batches_key = (index, epoch)
                batches = iterate_batches(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                          epoch=index * 100_000 + epoch, augment=cfg.augment, rank=rank,
                                          world_size=world, drop_last=True, device=str(device),
                                          start=batch_in_epoch * cfg.grad_accum)
            step_plan = plan_step(space, plan.stage, seed=cfg.seed, step=step)
            lr = learning_rate(plan, local, lr_scale)
            for group in optimizer.param_groups:
                group["lr"] = lr
            supernet.train()
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                x, y = next(batches)
                if x.shape[-1] != step_plan.resolution:
                    x = F.interpolate(x, size=(step_plan.resolution,) * 2, mode="bilinear", align_corners=False)
                x = x.contiguous(memory_format=memory)
                sync = world == 1 or micro == cfg.grad_accum - 1
                context = model.no_sync() if not sync else _nullcontext()
                with context, autocast:
                    loss = model(x, y, step_plan, plan.stage) / cfg.grad_accum
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {step} (stage {plan.stage.name!r}); the last good "
                        f"checkpoint is kept in {run_dir / 'checkpoints'}; lower the learning rate and re-run")
                with context:
                    loss.backward()
                loss_sum += loss.item()
                images_seen += len(x) * world
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(supernet.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if _KILL_AT_STEP is not None and step == _KILL_AT_STEP:  # fault injection for the resume tests
                os.kill(os.getpid(), 9)
            stage_end = step == plan.start + plan.steps
            if rank == 0 and (step % log_every == 0 or stage_end):
                now = time.perf_counter()
                rate = images_seen / max(now - window_start, 1e-9)
                images_seen, window_start = 0, now
                _append_jsonl(metrics_log, {"step": step, "stage": plan.stage.name, "epoch": epoch,
                                            "loss": loss_sum, "lr": lr, "img_per_s": round(rate, 1)})
                bar.update(step, f"{plan.stage.name} ep {epoch + 1}/{plan.stage.epochs}", loss_sum, rate)
                if board is not None:
                    board.add_scalar("train/loss", loss_sum, step)
                    board.add_scalar("train/lr", lr, step)
            if stage_end or step % cfg.checkpoint_every == 0:
                if stage_end and rank == 0:
                    bar.pause()
                    last_eval = _evaluate_stage(cfg, space, supernet, plan.stage, train_ds, val_ds, eval_cfg,
                                                device, progress)
                    _append_jsonl(metrics_log, {"step": step, "stage": plan.stage.name, "eval": last_eval})
                if rank == 0:
                    elapsed = train_seconds + time.perf_counter() - started
                    save_checkpoint(run_dir, supernet, optimizer,
                                    CheckpointState(step=step, stage=plan.stage.name, digest=cfg.digest(),
                                                    train_seconds=elapsed, eval=last_eval))
                if world > 1:
                    dist.barrier()
    finally:
        bar.close()
    if world > 1:  # parameters agree already; BN running statistics are per process until now: take rank 0's
        for buffer in supernet.buffers():
            dist.broadcast(buffer, src=0)

    bundle_dir = run_dir / "bundle"
    if rank == 0:
        elapsed = train_seconds + time.perf_counter() - started
        save_bundle(bundle_dir, supernet, dataset=train_ds.name, metrics=last_eval, training={
            "recipe": recipe_name, "recipe_digest": cfg.digest(), "recipe_config": cfg.to_dict(),
            "steps": total_steps, "train_seconds": round(elapsed, 1), "world_size": world,
            "machine": _machine(device), "normalization": {"mean": list(train_ds.mean), "std": list(train_ds.std)},
            "classes": train_ds.classes, **_finetuned(cfg, plans),
        })
    if world > 1:
        dist.barrier()
    return bundle_dir, supernet


def _finetuned(cfg: TrainConfig, plans: list[StagePlan]) -> dict[str, Any]:
    """The bundle.json record of a run that started from a bundle and ended training one fixed subnet."""
    last = plans[-1].stage
    if cfg.init is None or last.arch is None:
        return {}
    return {"finetuned": {"from_bundle": cfg.init, "arch": last.arch.to_dict(), "epochs": last.epochs,
                          "steps": plans[-1].steps}}


def _teacher(cfg: TrainConfig, run_dir: Path, supernet: nn.Module, space: SearchSpace, device: torch.device,
             memory: torch.memory_format, rank: int, world: int) -> nn.Module:
    """The frozen teacher: a given bundle's largest subnet, or the full network as trained so far (stored in the
    run directory the first time, so that a resumed run distils from the very same weights)."""
    from safetensors.torch import load_file, save_file

    from ofakit.bundle import load_bundle

    if cfg.teacher:
        source, _ = load_bundle(cfg.teacher)
        if source.space.name != space.name:
            raise ConfigError(f"teacher bundle {cfg.teacher} is for space {source.space.name!r}, not {space.name!r}")
        teacher = extract_subnet(source, space.largest())
    else:
        teacher = extract_subnet(supernet, space.largest())
        path = run_dir / "teacher.safetensors"
        if path.is_file():
            teacher.load_state_dict(load_file(str(path)))
        elif rank == 0:
            from ofakit.io import atomic_path

            with atomic_path(path) as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in teacher.state_dict().items()}, str(tmp))
        if world > 1:
            dist.barrier()
            teacher.load_state_dict(load_file(str(path)))
    return freeze_teacher(teacher, device, memory)


def freeze_teacher(teacher: nn.Module, device: torch.device | str, memory: torch.memory_format) -> nn.Module:
    """The teacher as training runs it: eval mode, batch norms folded into the convs, no gradients."""
    teacher = fold_batchnorm(teacher.eval()).to(device=device, memory_format=memory)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _evaluate_stage(cfg: TrainConfig, space: SearchSpace, supernet: nn.Module, stage: StageConfig, train_ds,
                    val_ds, eval_cfg: EvalConfig, device: torch.device, progress: bool) -> dict[str, Any]:
    rng = random.Random(f"{cfg.seed}:eval:{stage.name}")
    if stage.arch is not None:  # a fixed stage trains one subnet: evaluate that one
        archs = {"subnet": stage.arch}
    else:
        archs = {"largest": space.largest(), "smallest": space.smallest()}
        for i in range(cfg.eval_random_subnets):
            archs[f"random{i}"] = space.sample(rng)
    results = {}
    for name, arch in archs.items():
        acc = evaluate_subnet(supernet, arch, train_ds, val_ds, eval_cfg, device=str(device),
                              channels_last=cfg.channels_last)
        results[name] = {"top1": round(acc, 4), "macs": space.macs(arch), "arch": arch.to_dict()}
    if progress:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"stage {stage.name!r}: top-1 after BN recalibration")
        for col in ("subnet", "resolution", "MMACs", "top-1 %"):
            table.add_column(col)
        for name, r in results.items():
            table.add_row(name, str(r["arch"]["resolution"]), f"{r['macs'] / 1e6:.1f}", f"{100 * r['top1']:.2f}")
        Console().print(table)
    return results


def _tensorboard(run_dir: Path):  # noqa: ANN202 - SummaryWriter when the tensorboard package is installed
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _Progress:
    """A rich progress bar (stage, epoch, step, loss, img/s, ETA), or nothing."""

    def __init__(self, total: int, done: int, *, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.3f}  {task.fields[rate]:.0f} img/s"),
                                 TimeRemainingColumn())
        self.task = self.progress.add_task("training", total=total, completed=done, loss=float("nan"), rate=0.0)
        self.progress.start()

    def update(self, step: int, description: str, loss: float, rate: float) -> None:
        if self.enabled:
            self.progress.update(self.task, completed=step, description=description, loss=loss, rate=rate)

    def pause(self) -> None:
        if self.enabled:
            self.progress.refresh()

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()

"""The training loop: one command walks a recipe's stages (progressive shrinking, sandwich, uniform, or one fixed
subnet when fine-tuning), on one CPU, one GPU, or many GPUs and nodes under `torchrun` (PyTorch DDP), and resumes
from its last checkpoint. A run starts from fresh weights, or from a bundle's or another run's checkpoint's (`init`).

Every process draws the same subnets and resolution at each step (from the seed and the step number), so DDP
all-reduces gradients of the same parameters. All subnets of a step run inside one forward of `StepModule`, so DDP
sees one forward and one backward per micro-batch. Parameters a step leaves unused are handled by DDP's
`find_unused_parameters` only in stages whose random subnets may leave some out; a stage that trains one subnet
runs as a static graph, and one whose every step uses every parameter as plain DDP.

A `Trainer` is the run: `set_up` (processes, device, run directory, data, supernet), `resume` (the last
checkpoint), `train_step` until the recipe's last step, `end_step` (evaluations, checkpoints), `finish`
(the bundle). `on_step` is called after every step, with the step's number, once its checkpoint (if due) is written.
A single-process run stopped by Ctrl-C or SIGTERM ends the step under way and writes a checkpoint first
(`ofakit.train.stop`).
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ofakit.bundle import check_state_dict, save_bundle
from ofakit.errors import BundleError, ConfigError
from ofakit.space import SearchSpace, get_space
from ofakit.supernet import build_supernet
from ofakit.supernet.depthwise import cpu_note, weight_grad_backend
from ofakit.supernet.sort import sort_channels
from ofakit.train.checkpoint import (CheckpointState, load_checkpoint, restore_optimizer, restore_rng,
                                     save_checkpoint)
from ofakit.train.clock import RunClock
from ofakit.train.config import JOIN_TIMEOUT, StageConfig, TrainConfig, check_teachers
from ofakit.train.data import iterate_batches, load_dataset, resize_batch
from ofakit.train.distill import make_teacher, soft_cross_entropy
from ofakit.train.distributed import (Processes, ddp_unused_parameters, join, mark_varying_graph, match_grad_strides,
                                      pick_device, processes_from_env)
from ofakit.train.evaluate import EvalConfig, evaluate_stage
from ofakit.train.report import RunReport, machine, trim_metrics
from ofakit.train.run_dir import (RunLock, RunRecord, TrainingError, check_run_dir, checkpoint_run_record,
                                  is_checkpoint, is_finished, list_checkpoints, write_run_record)
from ofakit.train.sampling import StepPlan, plan_step
from ofakit.train.schedule import StagePlan, learning_rate, opens_smaller_expand, plan_stages, stage_at
from ofakit.train.stop import StopRequest

StepHook = Callable[[int], None]


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


def _param_groups(model: nn.Module, weight_decay: float, decay_all: bool) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if decay_all or p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _check_init(cfg: TrainConfig, space: SearchSpace, num_classes: int) -> None:
    """Refuse an `init` bundle (or run checkpoint) of another space or number of classes, before any weights load."""
    from ofakit.bundle import read_bundle_info

    if is_checkpoint(cfg.init):
        other = checkpoint_run_record(cfg.init, "init").recipe.get("space")
        if other != space.name:
            raise ConfigError(f"init checkpoint {cfg.init} is from a run of space {other!r}, the recipe trains "
                              f"{space.name!r}")
        return
    info = read_bundle_info(cfg.init)
    if info.space != space.name:
        raise ConfigError(f"init bundle {cfg.init} holds a supernet of space {info.space!r}, the recipe trains "
                          f"{space.name!r}")
    if info.num_classes != num_classes:
        raise ConfigError(f"init bundle {cfg.init} classifies {info.num_classes} classes, but data {cfg.data!r} "
                          f"has {num_classes}; start from a bundle trained on this data's classes")


def _init_weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    from ofakit.bundle import load_bundle

    if is_checkpoint(cfg.init):
        return load_checkpoint(Path(cfg.init)).model
    return load_bundle(cfg.init)[0].state_dict()


@dataclass(frozen=True)
class TrainResult:
    bundle: Path  # RUN_DIR/bundle
    supernet: nn.Module  # the trained supernet (on this process)
    already_finished: bool  # the run directory held this recipe's finished run: nothing was trained or written
    main: bool  # whether this is the main process (the one that reports)


def train(cfg: TrainConfig, run_dir: str | Path, *, recipe_name: str = "", progress: bool = True,
          log_every: int = 10, on_step: StepHook | None = None, join_timeout: float = JOIN_TIMEOUT) -> TrainResult:
    """Run (or resume) a training run in `run_dir`, ending with RUN_DIR/bundle.

    Args:
        cfg: the recipe.
        run_dir: a new or empty directory, or one holding this recipe's run (resumed from its last checkpoint, or
            left as it is when finished).
        recipe_name: recorded in run.json and bundle.json.
        progress: a progress bar and evaluation tables on the terminal.
        log_every: optimizer steps between metrics lines.
        on_step: called with the step number after every optimizer step (and its checkpoint, if one is due).
        join_timeout: seconds a process waits for the others to join under torchrun.
    """
    trainer = Trainer(cfg, Path(run_dir), recipe_name=recipe_name, progress=progress, log_every=log_every,
                      on_step=on_step, join_timeout=join_timeout)
    return trainer.run()


def run_training(cfg: TrainConfig, run_dir: str | Path, **options: Any) -> tuple[Path, nn.Module]:
    """`train` (same options), returning the bundle's path and the trained supernet."""
    result = train(cfg, run_dir, **options)
    return result.bundle, result.supernet


class Trainer:
    """One run of a recipe in a run directory, on this process (one of several under torchrun)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, *, recipe_name: str = "", progress: bool = True,
                 log_every: int = 10, on_step: StepHook | None = None, join_timeout: float = JOIN_TIMEOUT) -> None:
        self.cfg, self.run_dir, self.recipe_name = cfg, run_dir, recipe_name
        self.progress, self.log_every, self.on_step, self.join_timeout = progress, log_every, on_step, join_timeout
        self.processes: Processes = processes_from_env()
        self.lock = RunLock(run_dir)
        self.record: RunRecord | None = None
        self.step = 0  # optimizer steps done
        self.train_seconds = 0.0  # before this process started (resumed runs)
        self.last_eval: dict[str, Any] = {}
        self.teacher: nn.Module | None = None
        self.model: nn.Module | None = None  # the StepModule, wrapped in DDP with several processes
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizer_state: dict[str, Any] | None = None  # a checkpoint's, loaded with the stage's optimizer
        self.optimizer_source: Path | None = None  # that checkpoint
        self.batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.batches_key: tuple[int, int] | None = None  # (stage, epoch) of `batches`

    def run(self) -> TrainResult:
        """Train from the start or the last checkpoint to the end, holding the run directory's lock meanwhile."""
        try:
            if self.set_up():
                return self.already_finished()
            self.resume()
            self.clock = RunClock().start()
            self.report = RunReport(self.run_dir, self.total_steps, self.step, main=self.processes.main,
                                    progress=self.progress)
            stop = StopRequest().start() if self.processes.world == 1 else None  # see ofakit.train.stop
            try:
                while self.step < self.total_steps:
                    plan = self.train_step()
                    self.clock.tick()
                    self.end_step(plan)
                    if self.on_step is not None:
                        self.on_step(self.step)
                    if stop is not None and stop.name and self.step < self.total_steps:
                        self.stop_here(plan, stop.name)
            finally:
                if stop is not None:
                    stop.close()
                self.report.close()
                self.clock.close()
            return self.finish()
        finally:
            self.lock.release()

    # set-up

    def set_up(self) -> bool:
        """Join the other processes, check the run directory, load the data, plan the stages, take the run
        directory (lock, run.json), build the supernet; returns whether the run is finished already."""
        cfg = self.cfg
        self.device = pick_device(cfg.device, self.processes)  # before joining: NCCL binds the current GPU
        note = cpu_note(cfg.depthwise_grad) if self.device.type == "cpu" else None  # refuses a missing backend
        self.processes = processes = join(self.processes, cfg.device, self.join_timeout)
        self.record, finished = processes.on_main(self._look_at_run_dir)
        if finished:
            return True
        self.space = get_space(cfg.space)
        self.train_ds = load_dataset(cfg.data, "train", image_size=cfg.image_size)
        if cfg.init:
            _check_init(cfg, self.space, self.train_ds.num_classes)
        check_teachers(cfg, num_classes=self.train_ds.num_classes)
        self.val_ds = load_dataset(cfg.data, "val", image_size=cfg.image_size)
        self._plan(len(self.train_ds))
        self.record, finished = processes.on_main(self._take_run_dir)
        if finished:
            return True
        processes.check_shared(self.run_dir)
        self.checkpoints = list_checkpoints(self.run_dir)
        init = _init_weights(cfg) if cfg.init and not self.checkpoints else None
        self._build_supernet(init)
        if note and processes.main and self.progress:
            print(f"ofakit train: {note}")
        return False

    def _look_at_run_dir(self) -> tuple[RunRecord | None, bool]:
        """(Main process, before anything is written.) This recipe's run record, and whether the run is finished."""
        record = check_run_dir(self.run_dir, self.cfg.digest(), self.cfg.to_dict())
        return record, record is not None and is_finished(self.run_dir)

    def _take_run_dir(self) -> tuple[RunRecord, bool]:
        """(Main process.) Lock the run directory, look at it again under the lock (a process that held it until
        just now may have finished the run), start run.json for a new run."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        record, finished = self._look_at_run_dir()
        if record is None:
            record = RunRecord(digest=self.cfg.digest(), recipe=self.cfg.to_dict(), recipe_name=self.recipe_name,
                               world_size=self.processes.world, train_images=len(self.train_ds))
            write_run_record(self.run_dir, record)
        return record, finished

    def already_finished(self) -> TrainResult:
        """A finished run, left as it is (whatever the number of processes now)."""
        from ofakit.bundle import load_bundle

        bundle = self.run_dir / "bundle"
        return TrainResult(bundle, load_bundle(bundle)[0], already_finished=True, main=self.processes.main)

    def _plan(self, images: int) -> None:
        cfg = self.cfg
        per_step = cfg.batch_size * self.processes.world * cfg.grad_accum
        steps_per_epoch = images // per_step
        if steps_per_epoch == 0:
            raise ConfigError(f"{images} training images are fewer than one step's {per_step} "
                              "(batch_size x processes x grad_accum); lower batch_size")
        self.plans = plan_stages(cfg, steps_per_epoch)
        self.total_steps = self.plans[-1].start + self.plans[-1].steps
        self.lr_scale = per_step / cfg.base_batch_size if cfg.scale_lr else 1.0

    def _build_supernet(self, init: dict[str, torch.Tensor] | None) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        supernet = build_supernet(self.space, num_classes=self.train_ds.num_classes, dropout=cfg.dropout)
        self.memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.supernet = supernet.to(device=self.device, memory_format=self.memory)
        if init is not None:
            check_state_dict(self.supernet.state_dict(), init, what=f"init {cfg.init}", space=self.space.name)
            self.supernet.load_state_dict(init)
        if self.processes.world > 1:
            match_grad_strides(self.supernet)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" and cfg.bf16 \
            else torch.autocast("cpu", enabled=False)
        self.eval_cfg = EvalConfig(batch_size=cfg.eval_batch_size, max_batches=cfg.eval_max_batches,
                                   recalibration_batches=cfg.recalibration_batches, seed=cfg.seed)

    # resume

    def resume(self) -> None:
        """Weights, RNG, step, optimizer state, training time and last evaluation of the newest checkpoint; the
        resume is recorded in run.json. A run goes on only with the number of processes it was trained with."""
        processes = self.processes
        record = dataclasses.replace(self.record, train_images=len(self.train_ds))  # older run.json files lack it
        if not self.checkpoints:
            if processes.main and record.world_size != processes.world:  # nothing trained yet: start afresh
                write_run_record(self.run_dir, dataclasses.replace(record, world_size=processes.world))
            return
        path = self.checkpoints[-1]
        ckpt = load_checkpoint(path)
        if record.world_size != processes.world:
            raise TrainingError(
                f"{self.run_dir} was trained by {record.world_size} process(es) up to step {ckpt.step}, this run has "
                f"{processes.world}: its steps, learning rate and data order depend on that number. Resume it with "
                f"{record.world_size} process(es) (torchrun --nnodes x --nproc_per_node = {record.world_size}), or "
                "start a new --out")
        try:
            self.supernet.load_state_dict(ckpt.model)
        except RuntimeError as exc:
            raise BundleError(f"checkpoint {path} does not fit this recipe's supernet: "
                              f"{str(exc).splitlines()[0]}") from None
        if ckpt.step > self.total_steps:
            raise BundleError(f"checkpoint {path} is at step {ckpt.step}, past this run's last step "
                              f"{self.total_steps} ({len(self.train_ds)} training images); a run resumes on the data "
                              "it was planned on: give that data back, or pass another --out")
        restore_rng(path, ckpt, self.device)
        self.step, self.optimizer_state, self.optimizer_source = ckpt.step, ckpt.optimizer, path
        self.train_seconds, self.last_eval = ckpt.state.train_seconds, ckpt.state.eval
        if processes.main:
            write_run_record(self.run_dir, record.resumed(processes.world, self.step))
            trim_metrics(self.run_dir / "metrics.jsonl", self.step)
            if self.progress:
                print(f"resuming {self.run_dir} at step {self.step} of {self.total_steps}")

    # step

    def train_step(self) -> StagePlan:
        """One optimizer step (over `grad_accum` micro-batches); returns the stage it belongs to."""
        cfg = self.cfg
        index = stage_at(self.plans, self.step)
        plan = self.plans[index]
        local = self.step - plan.start
        if self.optimizer is None or local == 0:
            self.start_stage(index, local)
        epoch, batch_in_epoch = divmod(local, plan.steps_per_epoch)
        batches = self._batches(index, epoch, batch_in_epoch)
        step_plan = plan_step(self.space, plan.stage, seed=cfg.seed, step=self.step)
        lr = learning_rate(plan, local, self.lr_scale)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.supernet.train()
        loss = 0.0
        for micro in range(cfg.grad_accum):
            loss += self._micro_step(batches, step_plan, plan.stage, sync=micro == cfg.grad_accum - 1)
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.supernet.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.step % self.log_every == 0 or self.step == plan.start + plan.steps:
            self.report.step(self.step, stage=plan.stage.name, epoch=epoch, epochs=plan.stage.epochs, loss=loss,
                             lr=lr)
        return plan

    def start_stage(self, index: int, local: int) -> None:
        """At a stage's first step (or the first step after a resume): sort channels where the stage opens smaller
        expand ratios, make the teacher, wrap the step in DDP, make the optimizer (with a checkpoint's state)."""
        cfg, plan = self.cfg, self.plans[index]
        if local == 0 and cfg.sort_channels and opens_smaller_expand(self.space, self.plans, index):
            sort_channels(self.supernet)
        if plan.stage.kd_weight > 0 and self.teacher is None:
            self.teacher = make_teacher(cfg, self.run_dir, self.supernet, self.space, self.device, self.memory,
                                    self.processes, self.train_ds)
        self.model = StepModule(self.supernet, self.teacher, cfg.label_smoothing)
        if self.processes.world > 1:
            options = ddp_unused_parameters(self.supernet, self.space, plan.stage, self.device, self.memory,
                                            grad_accum=cfg.grad_accum)
            if options.get("find_unused_parameters"):
                mark_varying_graph(self.model)
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                process_group=self.processes.group, **options)
        self.optimizer = torch.optim.SGD(_param_groups(self.supernet, cfg.weight_decay, cfg.decay_bn_and_bias),
                                         lr=0.0, momentum=cfg.momentum, nesterov=cfg.nesterov)
        if self.optimizer_state is not None and local > 0:
            restore_optimizer(self.optimizer_source, self.optimizer, self.optimizer_state)
        self.optimizer_state = None

    def _batches(self, index: int, epoch: int, batch_in_epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This process's share of the stage's epoch, from the batch the step starts at."""
        if self.batches_key != (index, epoch):
            cfg, processes = self.cfg, self.processes
            self.batches_key = (index, epoch)
            self.batches = iterate_batches(self.train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                           epoch=index * 100_000 + epoch, augment=cfg.augment, rank=processes.rank,
                                           world_size=processes.world, drop_last=True, device=str(self.device),
                                           start=batch_in_epoch * cfg.grad_accum, cutout=cfg.cutout,
                                           policy=cfg.augment_policy)
        return self.batches

    def _micro_step(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], step_plan: StepPlan,
                    stage: StageConfig, *, sync: bool) -> float:
        """Forward and backward of one micro-batch (gradients all-reduced only when `sync`); returns its loss."""
        x, y = next(batches)
        x = resize_batch(x, step_plan.resolution).contiguous(memory_format=self.memory)
        context = self.model.no_sync() if self.processes.world > 1 and not sync else nullcontext()
        with context:
            with self.autocast, weight_grad_backend(self.cfg.depthwise_grad):
                loss = self.model(x, y, step_plan, stage) / self.cfg.grad_accum
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {self.step} (stage {stage.name!r}); the last good "
                    f"checkpoint is kept in {self.run_dir / 'checkpoints'}; lower the learning rate and re-run")
            loss.backward()
        self.report.images_seen(len(x) * self.processes.world)
        return loss.item()

    # stage end

    def end_step(self, plan: StagePlan) -> None:
        """After a step: at a stage's end and every `eval_every_epochs` within it, evaluate (main process); then, and
        every `checkpoint_every` steps, write a checkpoint (main process) that the others wait for. The stage-end
        evaluation is the one the checkpoints and the bundle keep; the others are only reported (metrics.jsonl,
        TensorBoard, the terminal)."""
        stage_end = self.step == plan.start + plan.steps
        if not self._checkpoint_due(plan):
            return
        if self.processes.main:
            if self._eval_due(plan):
                results = self._evaluate(plan.stage)
                done = -(-(self.step - plan.start) // plan.steps_per_epoch)  # a max_steps stage may end mid-epoch
                self.report.evaluation(self.step, plan.stage.name, results, epochs_done=done,
                                       stage_end=stage_end)
                if stage_end:
                    self.last_eval = results
            self._save(plan)
        self.processes.barrier()

    def stop_here(self, plan: StagePlan, why: str) -> None:
        """(Single process.) Stop after this step, at a checkpoint (written unless `end_step` just wrote it):
        raises KeyboardInterrupt, which the CLI reports as an interruption."""
        if not self._checkpoint_due(plan):
            self._save(plan)
        print(f"ofakit train: stopped by {why} after step {self.step} of {self.total_steps}, checkpoint written in "
              f"{self.run_dir}; run the same command to resume", file=sys.stderr, flush=True)
        raise KeyboardInterrupt

    def _checkpoint_due(self, plan: StagePlan) -> bool:
        """Whether `end_step` writes a checkpoint after this step: at the stage's end, at each evaluation and every
        `checkpoint_every`."""
        return self._eval_due(plan) or self.step % self.cfg.checkpoint_every == 0

    def _eval_due(self, plan: StagePlan) -> bool:
        """Whether `end_step` evaluates after this step: at the stage's end, and after every `eval_every_epochs`-th
        epoch of the stage."""
        done = self.step - plan.start
        every = self.cfg.eval_every_epochs * plan.steps_per_epoch
        return done == plan.steps or (every > 0 and done % every == 0)

    def _save(self, plan: StagePlan) -> None:
        save_checkpoint(self.run_dir, self.supernet, self.optimizer,
                        CheckpointState(step=self.step, stage=plan.stage.name, digest=self.cfg.digest(),
                                        train_seconds=self._elapsed(), eval=self.last_eval),
                        device=self.device)

    def _evaluate(self, stage: StageConfig) -> dict[str, Any]:
        """An evaluation, on the random state it found: it builds networks (whose initialisation draws
        random numbers) on the main process only, and every process must go on drawing the same dropout masks, so
        that a restart from rank 0's checkpoint continues each process exactly."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return evaluate_stage(self.space, self.supernet, stage, self.train_ds, self.val_ds, self.eval_cfg,
                                  random_subnets=self.cfg.eval_random_subnets, device=str(self.device),
                                  channels_last=self.cfg.channels_last)

    def _elapsed(self) -> float:
        """Training seconds of the whole run: the checkpoint's, then this process's (stopped time left out)."""
        return self.train_seconds + self.clock.elapsed()

    # finish

    def finish(self) -> TrainResult:
        """The bundle (main process), with rank 0's BN statistics on every process."""
        cfg, processes = self.cfg, self.processes
        processes.broadcast_buffers(self.supernet)  # parameters agree already; BN statistics are per process
        bundle_dir = self.run_dir / "bundle"
        if processes.main:
            save_bundle(bundle_dir, self.supernet, dataset=self.train_ds.name, metrics=self.last_eval, training={
                "recipe": self.recipe_name, "recipe_digest": cfg.digest(), "recipe_config": cfg.to_dict(),
                "steps": self.total_steps, "train_seconds": round(self._elapsed(), 1), "world_size": processes.world,
                "machine": machine(self.device),
                "normalization": {"mean": list(self.train_ds.mean), "std": list(self.train_ds.std)},
                "classes": self.train_ds.classes, **_finetuned(cfg, self.plans),
            })
        processes.barrier()
        return TrainResult(bundle_dir, self.supernet, already_finished=False, main=processes.main)


def _finetuned(cfg: TrainConfig, plans: list[StagePlan]) -> dict[str, Any]:
    """The bundle.json record of a run that started from a bundle and ended training one fixed subnet."""
    last = plans[-1].stage
    if cfg.init is None or last.arch is None:
        return {}
    return {"finetuned": {"from_bundle": cfg.init, "arch": last.arch.to_dict(), "epochs": last.epochs,
                          "steps": plans[-1].steps}}

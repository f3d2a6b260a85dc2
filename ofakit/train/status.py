"""Where a training run stands, read from its run directory alone: run.json (the recipe and the training split's
size, hence the schedule), metrics.jsonl (the logged steps, their pace, the evaluations), the checkpoints'
state.json and the lock. For a run that trains in the background, under torchrun on other machines, or that stopped.
Reading this module never imports torch, and reading a run never writes to it.

Time left is the training time at the current stage's pace (the median img/s of its last logged steps): evaluations
and checkpoints come on top, and a later stage that trains more subnets a step runs slower.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ofakit.errors import ConfigError
from ofakit.io import read_json_file, read_jsonl
from ofakit.train.config import recipe_from_dict
from ofakit.train.run_dir import RUN_JSON, is_finished, list_checkpoints, lock_holder, read_run_record
from ofakit.train.schedule import plan_stages, stage_at

PACE_WINDOW = 50  # logged steps of the current stage whose median img/s is its pace


@dataclass(frozen=True)
class Evaluation:
    """One evaluation, at a stage's end or within it (`eval_every_epochs`): top-1 of each evaluated subnet on the
    recipe's validation images."""

    stage: str
    step: int
    top1: dict[str, float]
    epochs_done: int | None = None  # the stage's epochs up to it, the last partial where a max_steps stage
    # ends mid-epoch (None in the metrics of older runs)
    stage_end: bool = True


@dataclass(frozen=True)
class RunStatus:
    run_dir: str
    recipe_name: str
    space: str
    state: str  # finished | training | stopped | not started | unknown (the lock's holder is on another host)
    holder: str  # the lock's holder as it wrote itself ("pid N on HOST"); "" when none
    step: int  # optimizer steps done: the last logged step, or the last checkpoint's if later
    total_steps: int | None  # None when run.json predates the training split's size (a resume records it)
    stage: str  # the stage of the next step ("" when finished or not known)
    stage_index: int  # 1-based; 0 when not known
    stages: int
    epoch: int  # 1-based epoch of the stage that the next step is in; 0 when not known
    epochs: int
    checkpoint_step: int | None  # the last complete checkpoint (the step a resume goes on from)
    checkpoint_age_s: float | None
    train_seconds: float | None  # training time up to the last checkpoint, over every resume
    world_size: int
    resumes: int
    img_per_s: float | None  # the current stage's pace (median of its last logged steps); None when finished
    stage_left_s: float | None  # the current stage's training time left at that pace
    run_left_s: float | None  # the whole run's, at that pace
    evaluations: list[Evaluation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_status(run_dir: str | Path, now: float | None = None) -> RunStatus:
    """The status of the run in `run_dir`; a ConfigError naming the folder when it holds no ofakit run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder; pass the --out folder of an `ofakit train` or `ofakit finetune` "
                          "run")
    record = read_run_record(run_dir)
    if record is None:
        raise ConfigError(f"{run_dir} holds no {RUN_JSON}, so no ofakit training run; pass the --out folder of an "
                          "`ofakit train` or `ofakit finetune` run")
    cfg = recipe_from_dict(record.recipe, f"{run_dir / RUN_JSON}: recipe")
    now = time.time() if now is None else now
    rows = _metrics(run_dir)
    steps = [r for r in rows if isinstance(r.get("step"), int) and isinstance(r.get("img_per_s"), (int, float))]
    evaluations = [Evaluation(str(r.get("stage", "")), r["step"], _top1(r["eval"]),
                              r["epochs_done"] if isinstance(r.get("epochs_done"), int) else None,
                              r.get("stage_end") is not False)
                   for r in rows if isinstance(r.get("step"), int) and isinstance(r.get("eval"), dict)]

    checkpoints = list_checkpoints(run_dir)
    ckpt_step = ckpt_age = train_seconds = None
    if checkpoints:
        state = read_json_file(checkpoints[-1] / "state.json", "a checkpoint state file")
        if isinstance(state, dict) and isinstance(state.get("step"), int):
            ckpt_step = state["step"]
            ckpt_age = max(0.0, now - (checkpoints[-1] / "state.json").stat().st_mtime)
            seconds = state.get("train_seconds")
            train_seconds = float(seconds) if isinstance(seconds, (int, float)) else None
    step = max([s["step"] for s in steps] + [ckpt_step or 0])

    finished = is_finished(run_dir)
    held = lock_holder(run_dir)
    holder = held[0] if held else ""
    if finished:
        state_name = "finished"
    elif held and held[1] is True:
        state_name = "training"
    elif held and held[1] is None:
        state_name = "unknown"
    else:
        state_name = "stopped" if step else "not started"

    per_step = cfg.batch_size * record.world_size * cfg.grad_accum
    plans = plan_stages(cfg, record.train_images // per_step) if 0 < per_step <= record.train_images else None
    total = plans[-1].start + plans[-1].steps if plans else None
    if finished and total is not None:
        step = total
    index = stage_at(plans, step) if plans and not finished else None
    plan = plans[index] if index is not None else None
    current = plan.stage.name if plan else (steps[-1].get("stage") if steps and not finished else None)
    recent = [r["img_per_s"] for r in steps if current is not None and r.get("stage") == current and r["img_per_s"] > 0]
    pace = statistics.median(recent[-PACE_WINDOW:]) if recent else None
    stage_left = run_left = None
    if pace and plan is not None:
        seconds_per_step = per_step / pace
        stage_left = (plan.start + plan.steps - step) * seconds_per_step
        run_left = (total - step) * seconds_per_step
    return RunStatus(
        run_dir=str(run_dir), recipe_name=record.recipe_name, space=cfg.space, state=state_name, holder=holder,
        step=step, total_steps=total,
        stage=plan.stage.name if plan else "", stage_index=index + 1 if plan else 0,
        stages=len(cfg.stages), epoch=(step - plan.start) // plan.steps_per_epoch + 1 if plan else 0,
        epochs=plan.stage.epochs if plan else 0, checkpoint_step=ckpt_step, checkpoint_age_s=ckpt_age,
        train_seconds=train_seconds, world_size=record.world_size, resumes=len(record.resumes), img_per_s=pace,
        stage_left_s=stage_left, run_left_s=run_left, evaluations=evaluations)


def _top1(results: dict[str, Any]) -> dict[str, float]:
    """subnet name -> top-1 of one evaluation (its entries are {"top1": ..., ...} or a bare number)."""
    out = {}
    for name, value in results.items():
        top1 = value.get("top1") if isinstance(value, dict) else value
        if isinstance(top1, (int, float)):
            out[str(name)] = float(top1)
    return out


def duration(seconds: float) -> str:
    """'2 d 3 h', '4 h 05 min', '7 min', '40 s'."""
    seconds = max(0, round(seconds))
    if seconds >= 86400:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def describe(status: RunStatus, resume_hint: bool = True) -> list[str]:
    """The status as lines of text for a terminal."""
    s = status
    where = f"step {s.step:,}" + (f" of {s.total_steps:,} ({100 * s.step / s.total_steps:.1f} %)"
                                   if s.total_steps else "")
    head = f"{s.run_dir}: {s.state}"
    if s.holder and s.state in ("training", "unknown"):
        head += f" ({s.holder}{'' if s.state == 'training' else ', on another machine: not checked'})"
    lines = [head, f"  recipe {s.recipe_name or '?'} ({s.space}), {s.world_size} process(es); {where}"]
    if s.stage:
        lines.append(f"  stage {s.stage} ({s.stage_index} of {s.stages}), epoch {s.epoch} of {s.epochs}")
    if s.img_per_s is not None and s.stage_left_s is not None:
        lines.append(f"  pace {s.img_per_s:,.0f} img/s: {duration(s.stage_left_s)} of training left in this stage, "
                     f"{duration(s.run_left_s)} in the run at this pace")
    elif s.total_steps is None and s.state != "finished":
        pace = f"pace {s.img_per_s:,.0f} img/s; " if s.img_per_s is not None else ""
        lines.append(f"  {pace}steps in all: not known (run.json from an older ofakit; the next resume records them)")
    if s.checkpoint_step is not None:
        trained = f", {duration(s.train_seconds)} of training so far" if s.train_seconds is not None else ""
        lines.append(f"  last checkpoint: step {s.checkpoint_step:,}, written {duration(s.checkpoint_age_s)} ago"
                     f"{trained}; {s.resumes} resume(s)")
    for e in s.evaluations[-3:]:
        scores = ", ".join(f"{name} {100 * v:.2f} %" for name, v in e.top1.items())
        when = f"after stage {e.stage}" if e.stage_end else f"in stage {e.stage} after epoch {e.epochs_done}"
        lines.append(f"  evaluation {when} (step {e.step:,}): {scores}")
    if resume_hint and s.state == "stopped":
        from ofakit.train.finetune import RECIPE_NAME

        command = "finetune" if s.recipe_name == RECIPE_NAME else "train"
        lines.append(f"  resume: run the same `ofakit {command}` command (recipe {s.recipe_name or '?'}, --out "
                     f"{s.run_dir}); it goes on from the last checkpoint")
    return lines


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    rows = read_jsonl(run_dir / "metrics.jsonl", "a training metrics file", lenient=True)
    return [r for r in rows if isinstance(r, dict)]


def plot_status(status: RunStatus, path: str | Path) -> Path:
    """A PNG of the run that `run_status` gave `status` for, against the step: training loss (and its running
    median) with the learning rate, the pace in img/s, and each evaluated subnet's top-1; the stages' boundaries
    dotted, the x axis to the run's last step when it is known (needs matplotlib)."""
    from ofakit.plot import pyplot, save_png

    run_dir = Path(status.run_dir)
    rows = _metrics(run_dir)
    logged = [r for r in rows if isinstance(r.get("step"), int) and isinstance(r.get("loss"), (int, float))]
    if not logged:
        raise ConfigError(f"{run_dir}/metrics.jsonl has no logged steps yet; nothing to plot")
    plt = pyplot("--plot")
    fig, (ax_loss, ax_pace, ax_top1) = plt.subplots(3, 1, figsize=(7, 7), dpi=120, sharex=True,
                                                     gridspec_kw={"height_ratios": [3, 1.2, 2]})
    x = [r["step"] for r in logged]
    loss = [r["loss"] for r in logged]
    ax_loss.plot(x, loss, lw=0.4, color="0.7", label="loss (logged steps)")
    window = max(1, len(loss) // 100)
    ax_loss.plot(x, [statistics.median(loss[max(0, i - window):i + 1]) for i in range(len(loss))], lw=1.2,
                 label=f"running median ({window} logged steps)")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend(fontsize=8, loc="upper right")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(x, [r.get("lr", float("nan")) for r in logged], lw=0.8, color="tab:green")
    ax_lr.set_ylabel("learning rate", color="tab:green")
    ax_pace.plot(x, [r.get("img_per_s", float("nan")) for r in logged], lw=0.5, color="tab:purple")
    ax_pace.set_ylabel("img/s")
    for name in sorted({n for e in status.evaluations for n in e.top1}):
        points = [(e.step, 100 * e.top1[name]) for e in status.evaluations if name in e.top1]
        ax_top1.plot(*zip(*points), marker="o", markersize=3, label=name)
    if status.evaluations:
        ax_top1.legend(fontsize=8)
    else:
        ax_top1.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax_top1.transAxes,
                     color="0.4")
    ax_top1.set_ylabel("top-1 (%)")
    ax_top1.set_xlabel("step")
    bounds = [b["step"] for a, b in zip(logged, logged[1:]) if a.get("stage") != b.get("stage")]
    for ax in (ax_loss, ax_pace, ax_top1):
        for b in bounds:
            ax.axvline(b, color="0.5", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
    if status.total_steps:
        ax_top1.set_xlim(0, status.total_steps)
    ax_loss.set_title(f"{run_dir}: {status.state}, step {status.step:,}"
                      + (f" of {status.total_steps:,}" if status.total_steps else ""), fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)

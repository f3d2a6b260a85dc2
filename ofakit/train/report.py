"""What a training run reports while it runs: RUN_DIR/metrics.jsonl, TensorBoard scalars (when the package is
installed), a progress bar and the evaluation tables on the terminal, and the machine it ran on. Only the
main process reports."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from ofakit.io import append_jsonl, atomic_write_text, read_jsonl


def trim_metrics(path: Path, step: int) -> None:
    """Drop the metrics lines of steps after `step`, the checkpoint a run resumes from (and torn lines, which
    `read_jsonl` skips): the resumed run writes those steps again, so each step keeps one line. Written atomically."""
    if not path.is_file():
        return
    keep = [r for r in read_jsonl(path, "a training metrics file", lenient=True)
            if not (isinstance(r, dict) and isinstance(r.get("step"), int) and r["step"] > step)]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


class RunReport:
    """metrics.jsonl, TensorBoard and the progress bar of one run (all off on processes other than the main one)."""

    def __init__(self, run_dir: Path, total: int, done: int, *, main: bool, progress: bool) -> None:
        self.metrics = run_dir / "metrics.jsonl"
        self.main = main
        self.progress = progress and main
        self.board = _tensorboard(run_dir) if main else None
        self.bar = _Progress(total, done, enabled=self.progress)
        self.images, self.window_start = 0, time.perf_counter()

    def images_seen(self, count: int) -> None:
        self.images += count

    def step(self, step: int, *, stage: str, epoch: int, epochs: int, loss: float, lr: float) -> None:
        """One logged step: loss, learning rate and images/s since the last logged step."""
        now = time.perf_counter()
        rate = self.images / max(now - self.window_start, 1e-9)
        self.images, self.window_start = 0, now
        if not self.main:
            return
        append_jsonl(self.metrics, {"step": step, "stage": stage, "epoch": epoch, "loss": loss, "lr": lr,
                                    "img_per_s": round(rate, 1)})
        self.bar.update(step, f"{stage} ep {epoch + 1}/{epochs}", loss, rate)
        if self.board is not None:
            self.board.add_scalar("train/loss", loss, step)
            self.board.add_scalar("train/lr", lr, step)

    def evaluation(self, step: int, stage: str, results: dict[str, Any], *, epochs_done: int,
                   stage_end: bool) -> None:
        """An evaluation after `epochs_done` epochs of `stage` (the last partial where a max_steps stage ends
        mid-epoch), at its end or within it: a metrics line, TensorBoard scalars and the table on the terminal."""
        append_jsonl(self.metrics, {"step": step, "stage": stage, "epochs_done": epochs_done, "stage_end": stage_end,
                                    "eval": results})
        if self.board is not None:
            for name, r in results.items():
                self.board.add_scalar(f"eval/{stage}/{name}_top1", r["top1"], step)
        if not self.progress:
            return
        from rich.console import Console
        from rich.table import Table

        self.bar.refresh()
        when = "" if stage_end else f", after epoch {epochs_done}"
        table = Table(title=f"stage {stage!r}{when}: top-1 after BN recalibration")
        for col in ("subnet", "resolution", "MMACs", "top-1 %"):
            table.add_column(col)
        for name, r in results.items():
            table.add_row(name, str(r["arch"]["resolution"]), f"{r['macs'] / 1e6:.1f}", f"{100 * r['top1']:.2f}")
        Console().print(table)

    def close(self) -> None:
        self.bar.close()


def machine(device: torch.device) -> dict[str, Any]:
    """The CPU, core count, torch version, device and threads a run used (recorded in bundle.json)."""
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


def _tensorboard(run_dir: Path):  # noqa: ANN202 - SummaryWriter when the tensorboard package is installed
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


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

    def refresh(self) -> None:
        if self.enabled:
            self.progress.refresh()

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()

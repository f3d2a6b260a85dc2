"""Knowledge distillation: soft targets from a teacher (OFA) or from the largest subnet in place (BigNAS)
(Hinton et al., 2015; Yu et al., "BigNAS", ECCV 2020), and the frozen teacher a run distils from."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ofakit.errors import BundleError, ConfigError
from ofakit.space import SearchSpace
from ofakit.supernet import extract_subnet
from ofakit.supernet.static import fold_batchnorm
from ofakit.train.config import TrainConfig, teacher_sources
from ofakit.train.data import ArrayDataset
from ofakit.train.distributed import Processes
from ofakit.train.evaluate import EvalConfig, recalibrate


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's softened distribution, scaled by T^2."""
    t = temperature
    target = F.softmax(teacher_logits.detach().float() / t, dim=1)
    return -(target * F.log_softmax(student_logits.float() / t, dim=1)).sum(dim=1).mean() * (t * t)


class EnsembleTeacher(nn.Module):
    """Several frozen teachers as one: its output is the log of their mean softmax, so that the soft targets at
    temperature 1 are the ensemble's averaged class probabilities (at T > 1, those probabilities flattened)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([F.softmax(m(x).float(), dim=1) for m in self.members]).mean(dim=0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def make_teacher(cfg: TrainConfig, run_dir: Path, supernet: nn.Module, space: SearchSpace, device: torch.device,
                 memory: torch.memory_format, processes: Processes, calibration: ArrayDataset) -> nn.Module:
    """The frozen teacher: the largest subnet of the bundle `teacher` names (of each bundle, averaged as an
    `EnsembleTeacher`, when it names several), or the full network as trained so far (stored in the run directory
    the first time, so that a resumed run distils from the very same weights).

    Each teacher's batch-norm statistics are first re-estimated on `calibration` (the run's training images, without
    augmentation; `cfg.recalibration_batches` batches at the largest resolution, as `evaluate_subnet` does): a
    supernet's stored statistics belong to whichever subnets ran last, not to its largest. (Measured on a bundle of
    `ofa-mbv3-cifar` after the sandwich rule: its largest subnet scored 36.0 % CIFAR-10 test top-1 with the stored
    statistics and 87.4 % recalibrated.)

    Building it (and folding its batch norms) draws initial weights from the global random state; that state is
    restored afterwards, so that a run resumed in the middle of a stage (which builds its teacher again) draws the
    dropout masks it drew before.
    """
    calibration_cfg = EvalConfig(recalibration_batches=max(1, cfg.recalibration_batches), seed=cfg.seed)

    def calibrated(teacher: nn.Module) -> nn.Module:
        return recalibrate(teacher.to(device=device, memory_format=memory), calibration, space.largest().resolution,
                           calibration_cfg, device=str(device), memory=memory)

    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        sources = teacher_sources(cfg)
        if not sources:
            return freeze_teacher(_own_teacher(run_dir, supernet, space, processes, calibrated), device, memory)
        members = [freeze_teacher(calibrated(_bundle_teacher(path, space)), device, memory) for path in sources]
        return members[0] if len(members) == 1 else EnsembleTeacher(members)


def _bundle_teacher(path: str, space: SearchSpace) -> nn.Module:
    from ofakit.bundle import load_bundle

    source, _ = load_bundle(path)
    if source.space.name != space.name:
        raise ConfigError(f"teacher bundle {path} is for space {source.space.name!r}, not {space.name!r}")
    return extract_subnet(source, space.largest())


def _own_teacher(run_dir: Path, supernet: nn.Module, space: SearchSpace, processes: Processes,
                 calibrated: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """The run's full network as it is now, recalibrated, stored the first time (`teacher.safetensors`) and read
    back from there by every process and every resume."""
    from safetensors.torch import save_file

    teacher = extract_subnet(supernet, space.largest())
    path = run_dir / "teacher.safetensors"
    if path.is_file():
        teacher.load_state_dict(_stored_teacher(path, teacher, space))
    elif processes.main:
        from ofakit.io import atomic_path

        teacher = calibrated(teacher)
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in teacher.state_dict().items()}, str(tmp))
    if processes.world > 1:
        processes.barrier()
        teacher.load_state_dict(_stored_teacher(path, teacher, space))
    return teacher


def _stored_teacher(path: Path, teacher: nn.Module, space: SearchSpace) -> dict[str, torch.Tensor]:
    """The weights of RUN_DIR/teacher.safetensors, checked against `teacher`'s keys and shapes: a damaged or foreign
    file is one BundleError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ofakit.bundle import check_safetensors, check_state_dict

    check_safetensors(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"cannot read the run's teacher {path}: {exc}; it was written when the first distilled "
                          "stage began (delete it to distil from the full network as it is now)") from None
    check_state_dict(teacher.state_dict(), tensors, what=f"the run's teacher {path}", space=space.name)
    return tensors


def freeze_teacher(teacher: nn.Module, device: torch.device | str, memory: torch.memory_format) -> nn.Module:
    """The teacher as training runs it: eval mode, batch norms folded into the convs, no gradients."""
    teacher = fold_batchnorm(teacher.eval()).to(device=device, memory_format=memory)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher

"""Knowledge distillation losses: soft targets from a teacher (OFA) or from the largest subnet in place (BigNAS)
(Hinton et al., 2015; Yu et al., "BigNAS", ECCV 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's softened distribution, scaled by T^2."""
    t = temperature
    target = F.softmax(teacher_logits.detach().float() / t, dim=1)
    return -(target * F.log_softmax(student_logits.float() / t, dim=1)).sum(dim=1).mean() * (t * t)

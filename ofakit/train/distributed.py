"""The processes of one training run: a single one, or many under `torchrun` (PyTorch DDP; NCCL on GPUs, gloo on
CPUs). Rank 0 is the main process: it alone writes the run directory and reports."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ofakit.errors import ConfigError


@dataclass(frozen=True)
class Processes:
    """This process's place among the run's processes (from torchrun's environment)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BN running statistics, which DDP does not keep in step) on every process."""
        if self.world > 1:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


def processes_from_env() -> Processes:
    return Processes(world=int(os.environ.get("WORLD_SIZE", "1")), rank=int(os.environ.get("RANK", "0")),
                     local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, processes: Processes) -> torch.device:
    """The recipe's device (auto | cpu | cuda) for this process: under torchrun, the GPU of its local rank."""
    if name == "auto":
        device = torch.device(f"cuda:{processes.local_rank}" if torch.cuda.is_available() else "cpu")
    elif name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("recipe asks for device 'cuda' but no CUDA GPU is available; use device: auto or cpu")
        device = torch.device(f"cuda:{processes.local_rank}")
    elif name == "cpu":
        device = torch.device("cpu")
    else:
        raise ConfigError(f"unknown device {name!r}; choices: auto, cpu, cuda")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def join(processes: Processes, device_name: str) -> None:
    """Join the run's process group (a no-op for a single process)."""
    if processes.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo")

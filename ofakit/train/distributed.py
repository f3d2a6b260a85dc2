"""The processes of one training run: a single one, or many under `torchrun` (PyTorch DDP; NCCL on GPUs, gloo on
CPUs). Rank 0 is the main process: it alone writes the run directory and reports; its decisions (and its errors)
reach every process, so that all of them stop with the same one line.

Joining is bounded: a process that cannot reach the others within `join_timeout` seconds stops with one line (and
a non-zero exit, which torchrun's `--max-restarts` acts on). Once joined, collectives wait up to `WORK_TIMEOUT`
(the main process evaluates, at stage ends and every `eval_every_epochs`, while the others wait).
"""
from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, OfakitError
from ofakit.space import SearchSpace
from ofakit.train.config import JOIN_TIMEOUT, StageConfig

T = TypeVar("T")
WORK_TIMEOUT = timedelta(minutes=30)  # torch's default for collectives


class DistributedError(OfakitError):
    """The processes of a run cannot work together (a process cannot join, an --out that is not shared)."""


@dataclass(frozen=True)
class Processes:
    """This process's place among the run's processes (from torchrun's environment), and their process group."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    group: Any = None  # the process group collectives use (None: the default one, or a single process)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier(group=self.group)

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BN running statistics, which DDP does not keep in step) on every process."""
        if self.world > 1:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0, group=self.group)

    def on_main(self, fn: Callable[[], T]) -> T:
        """`fn()` run by the main process, its result on every process; its OfakitError is raised on every one."""
        if self.world == 1:
            return fn()
        message: list[Any] = [None]
        if self.main:
            try:
                message = [("ok", fn())]
            except OfakitError as exc:
                message = [("error", type(exc), str(exc))]
        dist.broadcast_object_list(message, src=0, group=self.group)
        if message[0][0] == "error":
            _, kind, text = message[0]
            raise (kind if issubclass(kind, OfakitError) else DistributedError)(text)
        return message[0][1]

    def check_shared(self, run_dir: Path) -> None:
        """Stop every process at once unless all of them see the run directory the main process writes (a marker
        file it writes, that each one reads)."""
        if self.world == 1:
            return
        marker = run_dir / ".ofakit-shared"
        token = [secrets.token_hex(8) if self.main else None]
        if self.main:
            marker.write_text(token[0])
        dist.broadcast_object_list(token, src=0, group=self.group)
        try:
            seen = marker.read_text() == token[0]
        except OSError:
            seen = False
        views: list[Any] = [None] * self.world
        dist.all_gather_object(views, (seen, socket.gethostname()), group=self.group)
        self.barrier()
        if self.main:
            marker.unlink()
        blind = [f"rank {rank} on {host}" for rank, (ok, host) in enumerate(views) if not ok]
        if blind:
            raise DistributedError(
                f"--out {run_dir} is not shared by every process ({', '.join(blind)} cannot see what rank 0 wrote "
                "there); ofakit train needs a run directory on a filesystem all nodes share (NFS, Lustre, ...)")


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


def join(processes: Processes, device_name: str, join_timeout: float = JOIN_TIMEOUT) -> Processes:
    """Join the run's process group within `join_timeout` seconds (a no-op for a single process); returns
    `processes` with the group its collectives use."""
    if processes.world == 1:
        return processes
    backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
    if not dist.is_initialized():
        host, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), os.environ.get("MASTER_PORT", "29500")
        timeout = timedelta(seconds=join_timeout)
        try:
            store = _attempt_store(processes, host, int(port), timeout)
            dist.init_process_group(backend, store=store, rank=processes.rank, world_size=processes.world,
                                    timeout=timeout)
        except (RuntimeError, ValueError, OSError) as exc:  # torch's DistStoreError and DistNetworkError included
            where = f"{host}:{port}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistributedError(
                f"process {processes.rank} of {processes.world} could not join the others at {where} ({first}); "
                f"it waits up to {join_timeout:g} s (--join-timeout); check the rendezvous address and port"
            ) from None
    group = dist.new_group(backend=backend, timeout=WORK_TIMEOUT)
    return Processes(processes.world, processes.rank, processes.local_rank, group)


def _attempt_store(processes: Processes, host: str, port: int, timeout: timedelta) -> dist.Store:
    """The rendezvous store (torchrun's agent store, or one that rank 0 serves), under a prefix of its own for each
    torchrun restart: the agent's store outlives a restart, and processes of a new attempt that read the gloo
    addresses of the dead attempt's processes fail ("connectFullMesh failed ... Connection refused") or wait."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    store = dist.TCPStore(host, port, world_size=processes.world, is_master=processes.main and not agent,
                          timeout=timeout, multi_tenant=True)
    return dist.PrefixStore(f"ofakit/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def match_grad_strides(module: nn.Module) -> None:
    """Give each gradient its parameter's strides where they differ only in dimensions of size 1 (a view, no copy).

    A 1x1 or depthwise conv weight in channels_last has strides that its contiguous twin does not share, though
    both address the same memory; autograd hands back either form, and DDP, whose bucket views take the parameter's
    strides, then warns "Grad strides do not match bucket view strides" on every process.
    """
    for param in module.parameters():
        if param.requires_grad and param.dim() > 1 and 1 in param.shape:
            param.register_hook(_stride_hook(param))


def _stride_hook(param: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def hook(grad: torch.Tensor) -> torch.Tensor:
        want = param.stride()
        if grad.stride() != want and all(a == b or n == 1 for a, b, n in zip(grad.stride(), want, param.shape)):
            return grad.as_strided(param.shape, want, grad.storage_offset())
        return grad
    return hook


def unused_parameters(supernet: nn.Module, archs: list[ArchConfig], device: torch.device,
                      memory: torch.memory_format) -> list[str]:
    """Names of the trainable parameters that none of `archs` uses: one backward of a blank image through each, in
    eval mode (no BN statistics, random numbers or weights change)."""
    training = supernet.training
    supernet.eval()
    try:
        for arch in archs:
            supernet.set_active(arch)
            x = torch.zeros(1, 3, arch.resolution, arch.resolution, device=device).contiguous(memory_format=memory)
            supernet(x).float().sum().backward()
        return [name for name, p in supernet.named_parameters() if p.requires_grad and p.grad is None]
    finally:
        supernet.zero_grad(set_to_none=True)
        supernet.train(training)


def mark_varying_graph(module: nn.Module) -> None:
    """Give a module that DDP wraps with `find_unused_parameters` one parameter that no step ever uses.

    In a stage of random subnets some steps leave parameters unused and others happen to use them all (every block
    drew a kernel that needs both transforms); DDP's flag is per constructor, and at the first step that uses them all
    each process prints a C++ warning (`find_unused_parameters=True was specified ... but did not find any unused
    parameters`) that no Python filter reaches. The extra parameter keeps that warning's premise false. It is outside
    the supernet, so no optimizer, checkpoint or bundle sees it, and its gradient stays None on every process."""
    param = next(module.parameters(), None)
    module.register_parameter("varying_graph", nn.Parameter(torch.zeros(1, device=param.device if param is not None
                                                                        else None)))


def ddp_unused_parameters(supernet: nn.Module, space: SearchSpace, stage: StageConfig, device: torch.device,
                          memory: torch.memory_format, *, grad_accum: int = 1) -> dict[str, bool]:
    """DDP's settings for the parameters a stage's steps leave unused: none where every step uses every parameter,
    a static graph where every step trains the same subnet (without gradient accumulation, which a static graph does
    not support), else a search of the graph after each forward (`find_unused_parameters`)."""
    if stage.sampler in ("largest", "fixed"):
        if not unused_parameters(supernet, [stage.arch or space.largest()], device, memory):
            return {}
        if grad_accum == 1:
            return {"static_graph": True}
    elif stage.sampler == "sandwich" and not unused_parameters(supernet, [space.largest(), space.smallest()],
                                                               device, memory):
        return {}
    return {"find_unused_parameters": True}

"""Data-parallel scaling of `ofakit train`'s step: images/s of one process against two (DDP over gloo on 127.0.0.1,
one thread each, so that both runs use the same number of threads in all), and the all-reduce of one step's
gradients timed on its own, which is what the second process adds.

The step is the loop's own: `StepModule` (the subnets `plan_step` draws for a progressive-shrinking stage with every
choice open, distilled from the frozen full network), forward + backward + SGD, with DDP set up as `Trainer` sets it
up (`ddp_unused_parameters`, `match_grad_strides`), on synthetic images at one resolution. Each process runs `--batch`
images per step (the global batch doubles with two processes, as under torchrun). It prints one JSON line:

    python bench/ddp_scaling.py --space tiny --batch 32 --steps 20
    python bench/ddp_scaling.py --space ofa-mbv3-cifar --batch 64 --steps 10 --device cuda   # GPU: NCCL, 1 GPU

On this 2-core machine the ideal is 2x at equal total threads. The all-reduce runs between the same two processes,
on a buffer as large as all trainable parameters, after the timed steps.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn


@dataclass(frozen=True)
class Setting:
    space: str
    batch: int  # images per process per step
    steps: int  # timed steps
    warmup: int
    resolution: int
    device: str


def _step_fn(setting: Setting, rank: int, world: int):  # noqa: ANN202 - returns the timed step and the model
    from ofakit.space import get_space
    from ofakit.supernet import build_supernet, extract_subnet
    from ofakit.train.config import StageConfig
    from ofakit.train.distill import freeze_teacher
    from ofakit.train.distributed import ddp_unused_parameters, match_grad_strides
    from ofakit.train.loop import StepModule
    from ofakit.train.sampling import plan_step

    device = torch.device(f"cuda:{rank}" if setting.device == "cuda" else "cpu")
    memory = torch.channels_last
    space = get_space(setting.space)
    torch.manual_seed(0)
    supernet = build_supernet(space).to(device=device, memory_format=memory)
    teacher = freeze_teacher(extract_subnet(supernet, space.largest()), device, memory)
    stage = StageConfig(name="expand", subnets_per_step=2, kd_weight=1.0)
    model: nn.Module = StepModule(supernet, teacher, 0.1)
    if world > 1:
        match_grad_strides(supernet)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            **ddp_unused_parameters(supernet, space, stage, device, memory))
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(setting.batch, 3, setting.resolution, setting.resolution, generator=gen).to(device)
    x = x.contiguous(memory_format=memory)
    y = torch.randint(0, supernet.num_classes, (setting.batch,), generator=gen).to(device)

    def step(index: int) -> None:
        plan = plan_step(space, stage, seed=0, step=index)
        with autocast:
            loss = model(x, y, plan, stage)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step, supernet, device


def _timed_steps(setting: Setting, rank: int, world: int) -> tuple[list[float], nn.Module, torch.device]:
    step, supernet, device = _step_fn(setting, rank, world)
    for i in range(setting.warmup):
        step(i)
    times = []
    for i in range(setting.warmup, setting.warmup + setting.steps):
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    return times, supernet, device


def _allreduce_ms(supernet: nn.Module, device: torch.device, repeats: int) -> float:
    numel = sum(p.numel() for p in supernet.parameters() if p.requires_grad)
    buffer = torch.ones(numel, device=device)
    times = []
    for _ in range(repeats + 1):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(buffer)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def _worker(rank: int, world: int, port: int, setting: Setting, queue) -> None:  # noqa: ANN001 - an mp.Queue
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if setting.device == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        times, supernet, device = _timed_steps(setting, rank, world)
        allreduce = _allreduce_ms(supernet, device, repeats=setting.steps)
        if rank == 0:
            queue.put((times, allreduce))
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--batch", type=int, default=32, help="images per process per step")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=None, help="default: the space's largest")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    from ofakit.space import get_space

    resolution = args.resolution or max(get_space(args.space).resolutions)
    setting = Setting(args.space, args.batch, args.steps, args.warmup, resolution, args.device)

    torch.set_num_threads(1)
    one, _, _ = _timed_steps(setting, rank=0, world=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(2, port, setting, queue), nprocs=2, join=True)
    two, allreduce_ms = queue.get()
    step_1, step_2 = statistics.median(one), statistics.median(two)
    rate_1, rate_2 = args.batch / step_1, 2 * args.batch / step_2
    print(json.dumps({
        "bench": "ddp_scaling", "date": time.strftime("%Y-%m-%d"), "space": args.space, "batch_per_process": args.batch,
        "resolution": resolution, "steps": args.steps, "device": args.device,
        "backend": "nccl" if args.device == "cuda" else "gloo", "threads_per_process": 1,
        "img_per_s_1": round(rate_1, 1), "img_per_s_2": round(rate_2, 1), "speedup": round(rate_2 / rate_1, 3),
        "step_ms_1": round(1000 * step_1, 2), "step_ms_2": round(1000 * step_2, 2),
        "allreduce_ms": round(allreduce_ms, 2), "allreduce_share": round(allreduce_ms / (1000 * step_2), 3),
        "load_avg": os.getloadavg()[0], "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()

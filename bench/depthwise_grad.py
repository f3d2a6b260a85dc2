"""Depthwise weight gradients on a CPU: ofakit's Numba kernel against PyTorch's own (oneDNN), per layer and per step.

Two measurements, both on the largest subnet's depthwise layers of a space at one resolution and batch:

- layers: the weight gradient of every depthwise layer alone, at kernel 3, 5 and 7 (`aten.convolution_backward`
  with only the weight gradient asked for, against `ofakit.supernet.depthwise.numba_weight_grad`), each the fastest of
  a few repeats on random channels_last tensors, with the largest relative difference between the two;
- steps: whole training steps exactly as `ofakit train` runs them (`StepModule` forward, backward, SGD; channels_last),
  for the full network (a `largest` stage), an OFA elastic step (2 random subnets + distillation from the frozen
  largest) and a BigNAS sandwich step, once with `depthwise_grad: onednn` and once with `auto` (the Numba kernel for
  kernels >= 5). Two runners start from the same weights and take the same steps; in round r both run step r of each
  kind, one after the other (order reversed on odd rounds).

It prints one JSON line: per-layer totals and ratios, img/s per backend and step kind (median over rounds) and the
paired speedup (median over rounds of onednn time / auto time), load average before and after, and the machine.

    python -m bench.depthwise_grad          # ofa-mbv3-cifar, 32 px, batch 128, 2 threads: ~2 minutes on 2 cores

A run beside other work is worthless (two threads stall when another process wants a core): stop it first.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from bench.train_throughput import (BenchConfig, OfakitRunner, load, machine, make_batch, ofakit_plans, paired_ratio,
                                    timed)

BACKENDS = ("onednn", "auto")
KERNELS = (3, 5, 7)


def stages() -> dict[str, Any]:
    from ofakit.train.config import StageConfig

    return {"largest": StageConfig(name="full", sampler="largest"),
            "progressive": StageConfig(name="expand", subnets_per_step=2, kd_weight=1.0),
            "sandwich": StageConfig(name="s", sampler="sandwich", subnets_per_step=2)}


def layer_shapes(cfg: BenchConfig) -> list[tuple[tuple[int, ...], int]]:
    """(input shape, stride) of each depthwise layer of the largest subnet at `cfg.resolution` and `cfg.batch`."""
    from ofakit.space import get_space
    from ofakit.supernet import build_supernet
    from ofakit.supernet.dynamic_conv import DynamicDepthwiseConv2d

    space = get_space(cfg.space)
    supernet = build_supernet(space)
    supernet.set_active(dataclasses.replace(space.largest(), resolution=cfg.resolution))
    shapes: list[tuple[tuple[int, ...], int]] = []
    for module in supernet.modules():
        if isinstance(module, DynamicDepthwiseConv2d):
            module.register_forward_hook(lambda m, inp, out: shapes.append((tuple(inp[0].shape), m.stride)))
    with torch.no_grad():
        supernet.eval()(torch.zeros(1, 3, cfg.resolution, cfg.resolution))
    return [((cfg.batch, *shape[1:]), stride) for shape, stride in shapes]


def fastest(fn: Any, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def time_layers(cfg: BenchConfig, repeats: int) -> dict[str, Any]:
    from ofakit.supernet.depthwise import numba_weight_grad

    shapes = layer_shapes(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    out: dict[str, Any] = {"layers": len(shapes)}
    for k in KERNELS:
        onednn = numba = diff = 0.0
        for shape, s in shapes:
            channels, side = shape[1], shape[2]
            x = torch.randn(shape, generator=gen).contiguous(memory_format=torch.channels_last)
            w = torch.randn(channels, 1, k, k, generator=gen)
            side_out = (side + 2 * (k // 2) - k) // s + 1
            g = torch.randn(shape[0], channels, side_out, side_out, generator=gen).contiguous(
                memory_format=torch.channels_last)
            ref = lambda: torch.ops.aten.convolution_backward(  # noqa: E731
                g, x, w, None, [s, s], [k // 2] * 2, [1, 1], False, [0, 0], channels, [False, True, False])[1]
            mine = lambda: numba_weight_grad(x, g, k, s, k // 2)  # noqa: E731
            a, b = ref(), mine()
            diff = max(diff, float((a - b).abs().max() / a.abs().max()))
            onednn += fastest(ref, repeats)
            numba += fastest(mine, repeats)
        out[f"k{k}"] = {"onednn_ms": round(onednn * 1e3, 1), "numba_ms": round(numba * 1e3, 1),
                        "speedup": round(onednn / numba, 2), "max_rel_diff": float(f"{diff:.2e}")}
    return out


def time_steps(cfg: BenchConfig) -> dict[str, Any]:
    from ofakit.supernet.depthwise import weight_grad_backend

    step_plans = ofakit_plans(cfg, stages())
    runners = {}
    for backend in BACKENDS:
        runner = OfakitRunner(cfg, channels_last=True)
        runner.stages = stages()
        runners[backend] = runner
    x, y = make_batch(cfg, runners[BACKENDS[0]].num_classes)
    times: dict[str, dict[str, list[float]]] = {b: {k: [] for k in step_plans} for b in BACKENDS}
    for rnd in range(cfg.warmup + cfg.steps):
        gc.collect()
        for kind in step_plans:
            for backend in (BACKENDS if rnd % 2 == 0 else BACKENDS[::-1]):
                with weight_grad_backend(backend):
                    wall, _ = timed(lambda: runners[backend].step(x, y, step_plans[kind][rnd], kind), cfg.device)
                if rnd >= cfg.warmup:
                    times[backend][kind].append(wall)
            if rnd >= cfg.warmup:
                print(f"round {rnd} {kind}: " + ", ".join(f"{b} {cfg.batch / times[b][kind][-1]:.1f}"
                                                            for b in BACKENDS) + " img/s", file=sys.stderr, flush=True)
    return {
        "img_per_s": {b: {k: round(statistics.median(cfg.batch / t for t in ts), 1) for k, ts in kinds.items()}
                      for b, kinds in times.items()},
        "speedup_auto_over_onednn": {k: paired_ratio(times["onednn"][k], times["auto"][k]) for k in step_plans},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="ofa-mbv3-cifar", help="search space (default %(default)s)")
    p.add_argument("--resolution", type=int, default=32, help="input side (default %(default)s)")
    p.add_argument("--batch", type=int, default=128, help="images per step (default %(default)s)")
    p.add_argument("--steps", type=int, default=5, help="timed rounds (default %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="repeats per layer, fastest kept (default %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch (and Numba) threads (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.steps, args.batch, args.repeats, args.threads) < 1 or args.warmup < 0:
        p.error("--steps, --batch, --repeats and --threads must be at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from ofakit.errors import OfakitError
    from ofakit.supernet.depthwise import numba_available

    if not numba_available():
        print("error: numba is not installed; pip install 'ofakit[cpu-train]' (or '.[dev]')", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(space=args.space, resolution=args.resolution, batch=args.batch, steps=args.steps,
                      warmup=args.warmup, seed=args.seed, device="cpu", threads=args.threads)
    load_start, started = load(), time.perf_counter()
    try:
        layers = time_layers(cfg, args.repeats)
    except OfakitError as err:  # e.g. an unknown space name
        print(f"error: {err}", file=sys.stderr)
        return 2
    steps = time_steps(cfg)
    print(json.dumps({
        "bench": "depthwise_grad", "date": datetime.date.today().isoformat(),
        "config": {"space": cfg.space, "resolution": cfg.resolution, "batch": cfg.batch, "steps": cfg.steps,
                   "warmup": cfg.warmup, "repeats": args.repeats, "threads": cfg.threads, "channels_last": True},
        "weight_grad_per_step": layers, **steps,
        "seconds": round(time.perf_counter() - started, 1), "load_start": load_start, "load_end": load(),
        "machine": machine(cfg),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

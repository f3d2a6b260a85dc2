"""Does `torch.compile` speed up a CPU training step? The full network's step, eager against compiled.

Issue 20 asked whether `torch.compile` makes the CPU epochs of the reference run cheaper. This bench times the step
that the run's longest stage takes (a `largest` stage: the full network, forward with label-smoothed cross-entropy,
backward, SGD; channels_last, as `ofakit train` runs it) four ways, from the same weights on the same batch:

- `eager-auto`: what `ofakit train` runs (the Numba depthwise weight gradient for kernels >= 5);
- `eager-onednn`: PyTorch's own depthwise weight gradient;
- `compiled-onednn`: `torch.compile` (Inductor) of the supernet's forward, the largest subnet active, over PyTorch's
  convolutions: one graph, BN and activations fused;
- `compiled-auto`: the same over the Numba gradient (its autograd Function splits the graph at every depthwise conv).

The first calls of each compiled variant (its compilation) are left out and reported apart. Rounds alternate the
variants' order. It prints one JSON line: img/s per variant (median over rounds), each one's paired ratio to
`eager-auto`, the compile seconds, load before and after, and the machine.

    python -m bench.compile_step           # ofa-mbv3-cifar, 32 px, batch 128, 2 threads: ~6 minutes on 2 cores

A run beside other work is worthless (two threads stall when another process wants a core): stop it first.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from bench.train_throughput import BenchConfig, OfakitRunner, load, machine, make_batch, paired_ratio, timed

LABEL_SMOOTHING = 0.1
VARIANTS = {"eager-auto": ("auto", False), "eager-onednn": ("onednn", False),
            "compiled-onednn": ("onednn", True), "compiled-auto": ("auto", True)}


class Variant:
    """One runner (its own weights and optimizer, all from the same seed) and how its step runs."""

    def __init__(self, cfg: BenchConfig, backend: str, compiled: bool) -> None:
        from ofakit.space import get_space

        self.runner = OfakitRunner(cfg, channels_last=True)
        self.runner.module.supernet.set_active(dataclasses.replace(get_space(cfg.space).largest(),
                                                                   resolution=cfg.resolution))
        self.backend = backend
        self.forward = torch.compile(self.runner.module.supernet) if compiled else self.runner.module.supernet

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        from ofakit.supernet.depthwise import weight_grad_backend

        net, optimizer = self.runner.module.supernet, self.runner.optimizer
        net.train()
        with weight_grad_backend(self.backend):
            loss = F.cross_entropy(self.forward(x), y, label_smoothing=LABEL_SMOOTHING)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()


def run(cfg: BenchConfig, names: Sequence[str]) -> dict[str, Any]:
    variants = {name: Variant(cfg, *VARIANTS[name]) for name in names}
    x, y = make_batch(cfg, next(iter(variants.values())).runner.num_classes)
    x = x.contiguous(memory_format=torch.channels_last)
    first_calls: dict[str, float] = {}
    for name, variant in variants.items():  # compilation happens in the first call
        first_calls[name] = round(timed(lambda v=variant: v.step(x, y), "cpu")[0], 1)
        print(f"{name}: first step {first_calls[name]} s", file=sys.stderr, flush=True)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rnd in range(cfg.warmup + cfg.steps):
        gc.collect()
        for name in (list(variants) if rnd % 2 == 0 else list(variants)[::-1]):
            wall, _ = timed(lambda v=variants[name]: v.step(x, y), "cpu")
            if rnd >= cfg.warmup:
                times[name].append(wall)
        if rnd >= cfg.warmup:
            print(f"round {rnd - cfg.warmup + 1}/{cfg.steps}: " + ", ".join(
                f"{name} {cfg.batch / times[name][-1]:.0f}" for name in variants) + " img/s", file=sys.stderr,
                flush=True)
    base = names[0]
    return {
        "img_per_s": {name: round(cfg.batch / sorted(t)[len(t) // 2], 1) for name, t in times.items()},
        f"speedup_over_{base}": {name: paired_ratio(times[base], t) for name, t in times.items() if name != base},
        "first_step_seconds": first_calls,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.compile_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="ofa-mbv3-cifar", help="search space (default %(default)s)")
    p.add_argument("--resolution", type=int, default=32, help="input side (default %(default)s)")
    p.add_argument("--batch", type=int, default=128, help="images per step (default %(default)s)")
    p.add_argument("--steps", type=int, default=8, help="timed rounds (default %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds after the first calls (default %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default %(default)s)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated, the first is the ratios' base (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        print(f"error: unknown variant(s) {', '.join(unknown) or '(none given)'}; choices: {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(space=args.space, resolution=args.resolution, batch=args.batch, steps=args.steps,
                      warmup=args.warmup, seed=args.seed, device="cpu", threads=args.threads)
    load_start, started = load(), time.perf_counter()
    result = run(cfg, names)
    print(json.dumps({
        "bench": "compile_step", "date": datetime.date.today().isoformat(),
        "config": {"space": cfg.space, "resolution": cfg.resolution, "batch": cfg.batch, "steps": cfg.steps,
                   "warmup": cfg.warmup, "threads": cfg.threads, "channels_last": True, "variants": names},
        **result, "seconds": round(time.perf_counter() - started, 1), "load_start": load_start, "load_end": load(),
        "machine": machine(cfg),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

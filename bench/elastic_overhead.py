"""Elastic overhead: the training step of the supernet set to an arch against that of the extracted static subnet.

Weight sharing (Cai et al., "Once-for-All", ICLR 2020) costs something at every step: weights are sliced, the
depthwise filter goes through the kernel-transformation matrices, and gradients land in full-size tensors. This
script times one training step (forward, cross-entropy backward, SGD step, model in train mode) of both models on
the same batch for a few archs (largest, smallest, some random ones), alternating the two so that drift in the
machine's speed hits both alike, and prints one JSON line: per-arch median step times and ratios, the geometric
mean of the per-arch ratios (the headline figure) and the total-time ratio. With `--mit-python` it also runs the
same measurement for MIT's own `OFAMobileNetV3` under that interpreter (this file, with `--worker mit`).
It uses one torch thread unless told otherwise: on a small shared VM, two spinning OpenMP threads stall for seconds
whenever another process takes a core, which swamps a few-percent effect.

    python -m bench.elastic_overhead
    python -m bench.elastic_overhead --mit-python "$OFAKIT_MIT_PYTHON"     # a python with MIT's ofa package

Only the standard library and torch are imported at module level: the MIT worker runs where ofakit is not installed.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LR, MOMENTUM = 0.01, 0.9  # SGD of the timed step; the work done does not depend on the values
MIT_WIDTHS = {"ofa-mbv3-w1.0": 1.0, "ofa-mbv3-w1.2": 1.2}  # spaces that MIT's OFAMobileNetV3 builds
MIT_CLASSES = 1000  # MIT's supernets of those spaces are ImageNet-sized, as are ofakit's


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What is timed and how."""

    space: str = "ofa-mbv3-w1.0"  # search space (registry name)
    resolution: int = 128  # input image side
    batch: int = 16  # images per step
    steps: int = 6  # timed steps per model and arch
    warmup: int = 1  # untimed steps per model and arch, before those
    n_random: int = 3  # random archs besides the largest and the smallest
    seed: int = 0  # seeds the random archs and the batch
    device: str = "cpu"  # cpu or cuda
    threads: int = 1  # torch intra-op threads (0: torch's default); 1 is steady on a shared machine
    bf16: bool = False  # bfloat16 autocast
    channels_last: bool = False  # channels_last memory format for models and batch


@dataclasses.dataclass(frozen=True)
class Case:
    """One arch and the two models to compare for it."""

    name: str
    summary: str  # depths, kernel sizes and expand ratios, for the record
    activate: Callable[[], None]  # sets the (shared) supernet to this arch
    supernet: nn.Module
    static: nn.Module


# -- timing ---------------------------------------------------------------------------------------------------------
def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               cfg: BenchConfig) -> None:
    opt.zero_grad(set_to_none=True)
    with torch.autocast(cfg.device, dtype=torch.bfloat16) if cfg.bf16 else nullcontext():
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def time_interleaved(fns: Sequence[Callable[[], None]],
                     cfg: BenchConfig) -> tuple[list[list[float]], list[list[float]]]:
    """Wall and process-CPU seconds per call of each function over `cfg.steps` rounds, after `cfg.warmup` rounds.

    A round calls every function once, in order on even rounds and in reverse on odd ones, so that a slow or fast
    stretch of the machine is shared out evenly.
    """
    sync = torch.cuda.synchronize if cfg.device == "cuda" else (lambda: None)
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for rnd in range(cfg.warmup + cfg.steps):
        order = range(len(fns)) if rnd % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[i]()
            sync()
            if rnd >= cfg.warmup:
                wall[i].append(time.perf_counter() - start)
                cpu[i].append(time.process_time() - start_cpu)
    return wall, cpu


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num / den of the same round (adjacent in time, so drift cancels)."""
    return statistics.median(n / d for n, d in zip(num, den))


def geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def make_batch(cfg: BenchConfig, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random batch in every process (same seed, same torch version)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.batch, 3, cfg.resolution, cfg.resolution, generator=gen)
    y = torch.randint(0, num_classes, (cfg.batch,), generator=gen)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.to(cfg.device), y.to(cfg.device)


def prepare(model: nn.Module, cfg: BenchConfig) -> nn.Module:
    model = model.to(cfg.device).train()
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def measure(cases: Sequence[Case], cfg: BenchConfig, num_classes: int, label: str) -> dict[str, Any]:
    """Median step times of supernet and static subnet per case, their paired ratio, and the overall ratios."""
    x, y = make_batch(cfg, num_classes)
    on_cpu = cfg.device == "cpu"
    rows = []
    for case in cases:
        gc.collect()
        case.activate()
        sup, static = prepare(case.supernet, cfg), prepare(case.static, cfg)
        opt_sup = torch.optim.SGD(sup.parameters(), lr=LR, momentum=MOMENTUM)
        opt_static = torch.optim.SGD(static.parameters(), lr=LR, momentum=MOMENTUM)
        (w_sup, w_static), (c_sup, c_static) = time_interleaved(
            [lambda: train_step(sup, opt_sup, x, y, cfg), lambda: train_step(static, opt_static, x, y, cfg)], cfg)
        row = {
            "name": case.name, "arch": case.summary,
            "static_mparams": round(sum(p.numel() for p in static.parameters()) / 1e6, 3),
            "supernet_ms": round(statistics.median(w_sup) * 1e3, 1),
            "static_ms": round(statistics.median(w_static) * 1e3, 1),
            "ratio": round(paired_ratio(w_sup, w_static), 3),
        }
        if on_cpu:
            row["ratio_cpu_time"] = round(paired_ratio(c_sup, c_static), 3)
        rows.append(row)
        print(f"[{label}] {case.name}: supernet {row['supernet_ms']} ms, static {row['static_ms']} ms, "
              f"ratio {row['ratio']}" + (f" (cpu time {row['ratio_cpu_time']})" if on_cpu else ""),
              file=sys.stderr, flush=True)
    out = {
        "archs": rows,
        "ratio_geomean": round(geomean([r["ratio"] for r in rows]), 3),
        "ratio_total_time": round(sum(r["supernet_ms"] for r in rows) / sum(r["static_ms"] for r in rows), 3),
    }
    if on_cpu:
        out["ratio_cpu_time_geomean"] = round(geomean([r["ratio_cpu_time"] for r in rows]), 3)
    return out


def arch_summary(depths: Sequence[int], kernels: Sequence[int], expands: Sequence[float]) -> str:
    def join(values: Sequence[float]) -> str:
        return ",".join(str(v) for v in values)

    return f"d={join(depths)} ks={join(kernels)} e={join(expands)}"


# -- ofakit ---------------------------------------------------------------------------------------------------------
def ofakit_archs(cfg: BenchConfig) -> list[tuple[str, Any]]:
    """(name, ArchConfig): the largest, the smallest and `cfg.n_random` sampled archs, all at `cfg.resolution`."""
    from ofakit.space import get_space

    space = get_space(cfg.space)
    rng = random.Random(cfg.seed)
    named = [("largest", space.largest()), ("smallest", space.smallest())]
    named += [(f"random{i}", space.sample(rng)) for i in range(cfg.n_random)]
    return [(name, dataclasses.replace(arch, resolution=cfg.resolution)) for name, arch in named]


def run_ofakit(cfg: BenchConfig, archs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    from ofakit.supernet import build_supernet, extract_subnet

    net = build_supernet(cfg.space)
    cases = []
    for name, arch in archs:
        net.set_active(arch)
        cases.append(Case(name, arch_summary(arch.depths, arch.kernel_sizes, arch.expand_ratios),
                          lambda arch=arch: net.set_active(arch), net, extract_subnet(net, arch)))
    return measure(cases, cfg, net.num_classes, "ofakit")


# -- MIT's once-for-all (runs under its own interpreter) ------------------------------------------------------------
def run_mit(cfg: BenchConfig, archs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The same measurement for MIT's OFAMobileNetV3; `archs` are dicts with name, ks, e and d."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    net = OFAMobileNetV3(n_classes=MIT_CLASSES, dropout_rate=0, width_mult=MIT_WIDTHS[cfg.space],
                         ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    cases = []
    for a in archs:
        net.set_active_subnet(ks=a["ks"], e=a["e"], d=a["d"])
        static = net.get_active_subnet(preserve_weight=True)
        cases.append(Case(a["name"], arch_summary(a["d"], a["ks"], a["e"]),
                          lambda a=a: net.set_active_subnet(ks=a["ks"], e=a["e"], d=a["d"]), net, static))
    return {"implementation": f"ofa {importlib.metadata.version('ofa')}, torch {torch.__version__}",
            **measure(cases, cfg, MIT_CLASSES, "mit")}


def call_mit_worker(python: str, cfg: BenchConfig, archs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Run this file with `--worker mit` under `python`, archs as JSON on stdin; its last stdout line is the result."""
    payload = [{"name": name, "ks": list(a.kernel_sizes), "e": list(a.expand_ratios), "d": list(a.depths)}
               for name, a in archs]
    cmd = [python, str(Path(__file__).resolve()), "--worker", "mit", *config_argv(cfg)]
    proc = subprocess.run(cmd, input=json.dumps(payload), stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"the MIT worker failed (exit code {proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def config_argv(cfg: BenchConfig) -> list[str]:
    argv = ["--space", cfg.space, "--resolution", str(cfg.resolution), "--batch", str(cfg.batch),
            "--steps", str(cfg.steps), "--warmup", str(cfg.warmup), "--archs", str(cfg.n_random),
            "--seed", str(cfg.seed), "--device", cfg.device, "--threads", str(cfg.threads)]
    return argv + ["--bf16"] * cfg.bf16 + ["--channels-last"] * cfg.channels_last


# -- the record -----------------------------------------------------------------------------------------------------
def machine(cfg: BenchConfig) -> dict[str, Any]:
    """CPU model (with family/model numbers, since VMs often report a bare name), cores, torch, threads, GPU."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = info.get("model name") or platform.processor() or "unknown"
    if "cpu family" in info:
        cpu += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if cfg.device == "cuda" else None,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = BenchConfig()
    p.add_argument("--space", default=d.space, help="search space (default %(default)s)")
    p.add_argument("--resolution", type=int, default=d.resolution, help="input side (default %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="images per step (default %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps per model and arch (default %(default)s)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps first (default %(default)s)")
    p.add_argument("--archs", type=int, default=d.n_random,
                   help="random archs besides the largest and the smallest (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the random archs and the batch")
    p.add_argument("--device", choices=("cpu", "cuda"), default=d.device)
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads; 0 keeps torch's choice (default %(default)s: steady when the CPU is shared)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--channels-last", action="store_true", help="channels_last models and batch")
    p.add_argument("--mit-python", metavar="PYTHON",
                   help="also measure MIT's once-for-all, run under this interpreter (one with its ofa package)")
    p.add_argument("--worker", choices=("mit",), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.archs < 0 or args.batch < 1 or args.threads < 0:
        p.error("--steps and --batch must be at least 1; --warmup, --archs and --threads at least 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda given but torch sees no CUDA device")
    if (args.mit_python or args.worker) and args.space not in MIT_WIDTHS:
        p.error(f"--mit-python compares on MIT's MobileNetV3 spaces only ({', '.join(MIT_WIDTHS)}); "
                f"got --space {args.space}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = BenchConfig(space=args.space, resolution=args.resolution, batch=args.batch, steps=args.steps,
                      warmup=args.warmup, n_random=args.archs, seed=args.seed, device=args.device,
                      threads=args.threads, bf16=args.bf16, channels_last=args.channels_last)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if args.worker == "mit":
        print(json.dumps(run_mit(cfg, json.load(sys.stdin))), flush=True)
        return 0
    from ofakit.errors import OfakitError

    try:
        archs = ofakit_archs(cfg)
    except OfakitError as err:  # e.g. an unknown space name
        print(f"error: {err}", file=sys.stderr)
        return 2
    record: dict[str, Any] = {
        "bench": "elastic_overhead", "date": datetime.date.today().isoformat(),
        "step": f"forward + cross-entropy backward + SGD(lr={LR}, momentum={MOMENTUM}) step, train mode",
        "timing": "supernet and static steps alternate (ABBA); *_ms = median wall time per step; "
                  "ratio = median over rounds of supernet/static wall time within the round; "
                  "ratio_geomean = geometric mean of the per-arch ratios (headline); "
                  "ratio_total_time = sum of supernet medians / sum of static medians; "
                  "ratio_cpu_time* = the same with process CPU time (CPU only; robust to a busy machine)",
        "config": dataclasses.asdict(cfg) | {"threads": torch.get_num_threads()},
        "machine": machine(cfg),
        "ofakit": run_ofakit(cfg, archs),
    }
    if args.mit_python:
        record["mit"] = call_mit_worker(args.mit_python, dataclasses.replace(cfg, threads=torch.get_num_threads()),
                                        archs)
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

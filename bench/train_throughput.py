"""Training throughput: images/s of a progressive-shrinking step and a sandwich step, ofakit against MIT's once-for-all.

A progressive-shrinking step (OFA, the last elastic-expand phase: every choice open) trains 2 random subnets on the
labels (cross-entropy with label smoothing 0.1) plus soft cross-entropy from a frozen teacher, the full network. A
sandwich step (BigNAS) trains the largest subnet on the labels and the smallest plus 2 random ones on the largest's
soft logits (in-place distillation). Each is timed as forward + backward + SGD step:

- ofakit: through `StepModule`, exactly as `ofakit train` runs a step, with the subnets that `plan_step` draws;
  with channels_last (ofakit's default) and without it;
- MIT's `OFAMobileNetV3` (when `--mit-python` names an interpreter with its `ofa` package): the same subnets
  (`set_active_subnet(ks, e, d)`), the same batch and losses, step structured as MIT's own training loop
  (teacher forward under no_grad in train mode, one backward per subnet, then the optimizer step), in its default
  NCHW fp32. It runs in a worker process (this file, `--worker mit`) that waits on a pipe between blocks.

The measurement goes in rounds; in round r every implementation runs the same step `plan_step(seed, r)` (resolution
and batch fixed), one implementation after another (order reversed on odd rounds), never two at once, so that the
machine's slow and fast stretches are shared out evenly. It prints one JSON line: images/s per implementation and
step kind (median over rounds of batch / step time), the ratios to MIT (median over rounds of the paired ratio),
load average and CPU pressure, and the machine.

    python -m bench.train_throughput --mit-python "$OFAKIT_MIT_PYTHON"     # a python with MIT's ofa package

Defaults (`--resolution 128 --batch 32 --steps 6 --warmup 1 --threads 2`: the setting of the issue's MIT figure) take
about 3 minutes on a quiet 2-core CPU. Two threads stall badly when other processes want the cores (steps ran 10x
slower at load average 4-8 on a 2-vCPU VM); the JSON line records load average and CPU pressure so that such a run
can be recognised, and `--threads 1` is steadier there.

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
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 3e-5  # SGD (nesterov) of the timed step; the work does not depend on them
LABEL_SMOOTHING, DROPOUT = 0.1, 0.1  # OFA's and ofakit's recipe defaults
KINDS = ("progressive", "sandwich")
MIT_WIDTHS = {"ofa-mbv3-w1.0": 1.0, "ofa-mbv3-w1.2": 1.2}  # spaces that MIT's OFAMobileNetV3 builds
MIT_CLASSES = 1000  # MIT's supernets of those spaces are ImageNet-sized, as are ofakit's
GOAL = 1.8  # issue 3: >= 1.8x MIT's step on CPU


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What is timed and how."""

    space: str = "ofa-mbv3-w1.0"  # search space (registry name)
    resolution: int = 128  # input image side (every step; plan_step's own resolution draw is overridden)
    batch: int = 32  # images per step
    steps: int = 6  # timed rounds (one step per implementation and kind per round)
    warmup: int = 1  # untimed rounds first
    seed: int = 0  # seeds the plans (plan_step(seed, step)), the weights and the batch
    device: str = "cpu"  # cpu or cuda
    threads: int = 2  # torch intra-op threads (0: torch's default); 2 is the setting for MIT's 12.7 img/s


@dataclasses.dataclass(frozen=True)
class Plan:
    """One step's subnets, in a form both processes read: ks and e per block, d per stage, and each one's target
    ("label", "teacher" = labels + KD from the teacher, "inplace" = KD from the step's first subnet)."""

    archs: tuple[dict[str, list], ...]
    targets: tuple[str, ...]


# -- timing ---------------------------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any], device: str) -> tuple[float, float]:
    """Wall and process-CPU seconds of one call."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - start, time.process_time() - start_cpu


def make_batch(cfg: BenchConfig, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random batch (NCHW) in every process (same seed, same torch version; checked by a checksum)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.batch, 3, cfg.resolution, cfg.resolution, generator=gen)
    y = torch.randint(0, num_classes, (cfg.batch,), generator=gen)
    return x.to(cfg.device), y.to(cfg.device)


def checksum(x: torch.Tensor, y: torch.Tensor) -> list[float]:
    return [round(float(x.double().sum()), 6), int(y.sum())]


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    """SGD as both training loops use it: nesterov momentum, weight decay on weights only (not BN, not biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD([{"params": [p for p in params if p.dim() > 1], "weight_decay": WEIGHT_DECAY},
                            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}],
                           lr=LR, momentum=MOMENTUM, nesterov=True)


def median_ms(values: Sequence[float]) -> float:
    return round(statistics.median(values) * 1e3, 1)


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num / den of the same round (same subnets, adjacent in time)."""
    return round(statistics.median(n / d for n, d in zip(num, den)), 3)


# -- ofakit ---------------------------------------------------------------------------------------------------------
def ofakit_stages() -> dict[str, Any]:
    from ofakit.train.config import StageConfig

    return {"progressive": StageConfig(name="expand", subnets_per_step=2, kd_weight=1.0),
            "sandwich": StageConfig(name="s", sampler="sandwich", subnets_per_step=2)}


def ofakit_plans(cfg: BenchConfig, stages: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """StepPlans of rounds 0.. for each kind (`stages`, default `ofakit_stages()`), as `ofakit train` draws them, at
    `cfg.resolution`."""
    from ofakit.space import get_space
    from ofakit.train.sampling import plan_step

    space = get_space(cfg.space)
    plans: dict[str, list[Any]] = {}
    for kind, stage in (stages or ofakit_stages()).items():
        plans[kind] = []
        for step in range(cfg.warmup + cfg.steps):
            p = plan_step(space, stage, seed=cfg.seed, step=step)
            plans[kind].append(dataclasses.replace(
                p, resolution=cfg.resolution,
                archs=tuple(dataclasses.replace(a, resolution=cfg.resolution) for a in p.archs)))
    return plans


def portable(step_plan: Any) -> Plan:
    return Plan(tuple({"ks": list(a.kernel_sizes), "e": list(a.expand_ratios), "d": list(a.depths)}
                      for a in step_plan.archs), tuple(step_plan.targets))


class OfakitRunner:
    """ofakit's step as `ofakit.train.loop` runs it: StepModule forward under autocast, backward, SGD step."""

    def __init__(self, cfg: BenchConfig, channels_last: bool) -> None:
        from ofakit.space import get_space
        from ofakit.supernet import build_supernet, extract_subnet
        from ofakit.train.distill import freeze_teacher
        from ofakit.train.loop import StepModule

        self.cfg = cfg
        self.memory = torch.channels_last if channels_last else torch.contiguous_format
        space = get_space(cfg.space)
        torch.manual_seed(cfg.seed)
        supernet = build_supernet(space, dropout=DROPOUT).to(device=cfg.device, memory_format=self.memory)
        teacher = freeze_teacher(extract_subnet(supernet, space.largest()), cfg.device, self.memory)
        self.module = StepModule(supernet, teacher, LABEL_SMOOTHING)
        self.optimizer = sgd(supernet)
        self.num_classes = supernet.num_classes
        self.stages = ofakit_stages()
        self.mparams = round(sum(p.numel() for p in supernet.parameters()) / 1e6, 3)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.device == "cuda" else nullcontext()

    def step(self, x: torch.Tensor, y: torch.Tensor, plan: Any, kind: str) -> float:
        self.module.supernet.train()
        x = x.contiguous(memory_format=self.memory)
        with self.autocast:
            loss = self.module(x, y, plan, self.stages[kind])
        if not torch.isfinite(loss):
            raise SystemExit(f"ofakit: non-finite loss in a {kind} step")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


# -- MIT's once-for-all (runs under its own interpreter) ------------------------------------------------------------
class MitRunner:
    """MIT's OFAMobileNetV3 and a step shaped like its `progressive_shrinking.train_one_epoch`."""

    def __init__(self, cfg: BenchConfig) -> None:
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
        from ofa.utils import cross_entropy_loss_with_soft_target, cross_entropy_with_label_smoothing

        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.net = OFAMobileNetV3(n_classes=MIT_CLASSES, dropout_rate=DROPOUT, width_mult=MIT_WIDTHS[cfg.space],
                                  ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
        self.net.set_max_net()
        self.teacher = self.net.get_active_subnet(preserve_weight=True).to(cfg.device)  # MIT: MobileNetV3Large
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.net = self.net.to(cfg.device)
        self.optimizer = sgd(self.net)
        self.soft_ce = cross_entropy_loss_with_soft_target
        self.label_ce = cross_entropy_with_label_smoothing
        self.num_classes = MIT_CLASSES
        self.mparams = round(sum(p.numel() for p in self.net.parameters()) / 1e6, 3)

    def step(self, x: torch.Tensor, y: torch.Tensor, plan: Plan, kind: str) -> float:
        net = self.net
        net.train()
        soft_label = None
        if "teacher" in plan.targets:  # as MIT's loop: teacher in train mode, no_grad
            self.teacher.train()
            with torch.no_grad():
                soft_label = F.softmax(self.teacher(x).detach(), dim=1)
        net.zero_grad()
        total = 0.0
        for i, (arch, target) in enumerate(zip(plan.archs, plan.targets)):
            net.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
            out = net(x)
            if target == "label":
                loss = self.label_ce(out, y, LABEL_SMOOTHING)
            elif target == "teacher":  # MIT: kd_ratio * soft CE + train criterion (label smoothing)
                loss = 1.0 * self.soft_ce(out, soft_label) + self.label_ce(out, y, LABEL_SMOOTHING)
            else:  # in-place distillation from the first (largest) subnet
                loss = self.soft_ce(out, soft_label)
            if i == 0 and kind == "sandwich":
                soft_label = F.softmax(out.detach(), dim=1)
            loss.backward()
            total += loss.item()
        self.optimizer.step()
        if not math.isfinite(total):
            raise SystemExit(f"MIT: non-finite loss in a {kind} step")
        return total


def mit_worker(cfg: BenchConfig) -> None:
    """Line protocol on stdin/stdout: first the plans (JSON), answered by a ready line; then one request per step
    ({"kind", "round"}), answered by {"wall", "cpu", "loss"}; EOF ends it. Between requests it blocks on the pipe."""
    warnings.filterwarnings("ignore")  # MIT's nn.LogSoftmax() without dim
    payload = json.loads(sys.stdin.readline())
    plans = {k: [Plan(tuple(p["archs"]), tuple(p["targets"])) for p in v] for k, v in payload.items()}
    runner = MitRunner(cfg)
    x, y = make_batch(cfg, runner.num_classes)
    print(json.dumps({"ready": True, "checksum": checksum(x, y), "mparams": runner.mparams, "threads":
                      torch.get_num_threads(), "implementation":
                      f"ofa {importlib.metadata.version('ofa')}, torch {torch.__version__}"}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        loss = 0.0

        def run(req: dict[str, Any] = req) -> None:
            nonlocal loss
            loss = runner.step(x, y, plans[req["kind"]][req["round"]], req["kind"])

        wall, cpu = timed(run, cfg.device)
        print(json.dumps({"wall": wall, "cpu": cpu, "loss": loss}), flush=True)


class MitClient:
    """The MIT worker seen from the main process."""

    def __init__(self, python: str, cfg: BenchConfig, plans: dict[str, list[Plan]]) -> None:
        cmd = [python, str(Path(__file__).resolve()), "--worker", "mit", *config_argv(cfg)]
        self.cmd = " ".join(cmd)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        payload = {k: [{"archs": list(p.archs), "targets": list(p.targets)} for p in v] for k, v in plans.items()}
        self.info = self._ask(payload)

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.proc.wait()
            raise SystemExit(f"the MIT worker failed (exit code {self.proc.returncode}): {self.cmd}")
        return json.loads(line)

    def step(self, kind: str, rnd: int) -> tuple[float, float]:
        reply = self._ask({"kind": kind, "round": rnd})
        return reply["wall"], reply["cpu"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def config_argv(cfg: BenchConfig) -> list[str]:
    return ["--space", cfg.space, "--resolution", str(cfg.resolution), "--batch", str(cfg.batch),
            "--steps", str(cfg.steps), "--warmup", str(cfg.warmup), "--seed", str(cfg.seed),
            "--device", cfg.device, "--threads", str(cfg.threads)]


# -- the record -----------------------------------------------------------------------------------------------------
def load() -> dict[str, Any]:
    """Load average (1, 5, 15 min) and CPU pressure (share of time some task waited for a CPU, %)."""
    out: dict[str, Any] = {"loadavg": [round(v, 2) for v in os.getloadavg()]}
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()
        out["cpu_pressure"] = {k: float(v) for k, v in (f.split("=") for f in some[1:]) if k != "total"}
    except (OSError, IndexError, ValueError):
        pass
    return out


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


def summarize(times: dict[str, dict[str, list[tuple[float, float]]]], cfg: BenchConfig) -> dict[str, Any]:
    """img/s per implementation and kind (median over rounds), pooled img/s, and paired ratios to the baseline."""
    out: dict[str, Any] = {"img_per_s": {}, "img_per_s_pooled": {}, "img_per_s_rounds": {}, "step_ms": {}}
    if cfg.device == "cpu":
        out["cpu_ms"] = {}
    for impl, kinds in times.items():
        for key in out:
            out[key][impl] = {}
        for kind, ts in kinds.items():
            wall = [w for w, _ in ts]
            out["img_per_s"][impl][kind] = round(statistics.median(cfg.batch / w for w in wall), 2)
            out["img_per_s_pooled"][impl][kind] = round(cfg.batch * len(wall) / sum(wall), 2)
            out["img_per_s_rounds"][impl][kind] = [round(cfg.batch / w, 2) for w in wall]
            out["step_ms"][impl][kind] = median_ms(wall)
            if "cpu_ms" in out:
                out["cpu_ms"][impl][kind] = median_ms([c for _, c in ts])
    impls = list(times)
    pairs = [(a, "mit") for a in impls if a != "mit" and "mit" in times]
    if "ofakit_channels_last" in times and "ofakit_nchw" in times:
        pairs.append(("ofakit_channels_last", "ofakit_nchw"))
    out["speedup"] = {f"{a}/{b}": {kind: paired_ratio([w for w, _ in times[b][kind]], [w for w, _ in times[a][kind]])
                                   for kind in KINDS} for a, b in pairs}
    if cfg.device == "cpu":
        out["speedup_cpu_time"] = {
            f"{a}/{b}": {kind: paired_ratio([c for _, c in times[b][kind]], [c for _, c in times[a][kind]])
                         for kind in KINDS} for a, b in pairs}
    return out


def describe(plan: Any, space: Any) -> dict[str, Any]:
    return {"mmacs": round(sum(space.macs(a) for a in plan.archs) / 1e6, 1), "targets": list(plan.targets),
            "archs": [f"d={''.join(map(str, a.depths))} ks={''.join(map(str, a.kernel_sizes))} "
                      f"e={''.join(str(int(e)) for e in a.expand_ratios)}" for a in plan.archs]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = BenchConfig()
    p.add_argument("--space", default=d.space, help="search space (default %(default)s)")
    p.add_argument("--resolution", type=int, default=d.resolution, help="input side (default %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="images per step (default %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps,
                   help="timed rounds: one step of each implementation and kind per round (default %(default)s)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed rounds first (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the plans, the weights and the batch")
    p.add_argument("--device", choices=("cpu", "cuda"), default=d.device,
                   help="cuda: ofakit with bf16 autocast (its training default there), MIT in fp32 (its default)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads per process; 0 keeps torch's choice (default %(default)s, the setting of "
                        "the issue's MIT figure; 1 is steadier on a shared machine)")
    p.add_argument("--no-nchw", action="store_true", help="skip ofakit without channels_last (saves a third)")
    p.add_argument("--mit-python", metavar="PYTHON",
                   help="also measure MIT's once-for-all, run under this interpreter (one with its ofa package)")
    p.add_argument("--worker", choices=("mit",), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.threads < 0 or args.resolution < 32:
        p.error("--steps and --batch must be at least 1, --warmup and --threads at least 0, --resolution at least 32")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda given but torch sees no CUDA device")
    if (args.mit_python or args.worker) and args.space not in MIT_WIDTHS:
        p.error(f"--mit-python compares on MIT's MobileNetV3 spaces only ({', '.join(MIT_WIDTHS)}); "
                f"got --space {args.space}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = BenchConfig(space=args.space, resolution=args.resolution, batch=args.batch, steps=args.steps,
                      warmup=args.warmup, seed=args.seed, device=args.device, threads=args.threads)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if args.worker == "mit":
        mit_worker(cfg)
        return 0
    from ofakit.errors import OfakitError
    from ofakit.space import get_space

    try:
        space = get_space(cfg.space)
        plans = ofakit_plans(cfg)
    except OfakitError as err:  # e.g. an unknown space name
        print(f"error: {err}", file=sys.stderr)
        return 2
    load_start, started = load(), time.perf_counter()
    runners: dict[str, Any] = {"ofakit_channels_last": OfakitRunner(cfg, channels_last=True)}
    if not args.no_nchw:
        runners["ofakit_nchw"] = OfakitRunner(cfg, channels_last=False)
    x, y = make_batch(cfg, runners["ofakit_channels_last"].num_classes)
    steps: dict[str, Callable[[str, int], tuple[float, float]]] = {
        name: (lambda kind, rnd, r=r: timed(lambda: r.step(x, y, plans[kind][rnd], kind), cfg.device))
        for name, r in runners.items()}
    mit = None
    if args.mit_python:
        cfg_worker = dataclasses.replace(cfg, threads=torch.get_num_threads())
        mit = MitClient(args.mit_python, cfg_worker, {k: [portable(p) for p in v] for k, v in plans.items()})
        if mit.info["checksum"] != checksum(x, y):
            raise SystemExit(f"the MIT worker drew another batch ({mit.info['checksum']} vs {checksum(x, y)}); "
                             "are the two torch versions the same?")
        steps["mit"] = mit.step

    times: dict[str, dict[str, list[tuple[float, float]]]] = {name: {k: [] for k in KINDS} for name in steps}
    loads = []
    names = list(steps)
    try:
        for rnd in range(cfg.warmup + cfg.steps):
            gc.collect()
            for kind in KINDS:
                order = names if rnd % 2 == 0 else names[::-1]
                for name in order:
                    wall, cpu = steps[name](kind, rnd)
                    if rnd >= cfg.warmup:
                        times[name][kind].append((wall, cpu))
                print(f"round {rnd}{' (warm-up)' if rnd < cfg.warmup else ''} {kind}: "
                      + ", ".join(f"{n} {cfg.batch / times[n][kind][-1][0] if rnd >= cfg.warmup else float('nan'):.1f}"
                                  for n in names) + " img/s", file=sys.stderr, flush=True)
            loads.append(os.getloadavg()[0])
    finally:
        if mit is not None:
            mit.close()

    record: dict[str, Any] = {
        "bench": "train_throughput", "date": datetime.date.today().isoformat(),
        "step": {
            "progressive": "OFA elastic expand, all choices open: plan_step(StageConfig(name='expand', "
                           "subnets_per_step=2, kd_weight=1.0)): 2 random subnets, each CE (label smoothing 0.1) + "
                           "1.0 x soft CE from the frozen teacher (largest subnet extracted), teacher forward once",
            "sandwich": "BigNAS: plan_step(StageConfig(name='s', sampler='sandwich', subnets_per_step=2)): largest "
                        "on labels (CE, label smoothing 0.1), smallest + 2 random on its soft logits",
            "both": f"forward + backward + SGD(lr={LR}, momentum={MOMENTUM}, nesterov, wd={WEIGHT_DECAY}) step, "
                    f"train mode, dropout {DROPOUT}; ofakit: StepModule (one summed backward); "
                    "MIT: OFAMobileNetV3.set_active_subnet per subnet, one backward per subnet, teacher in train "
                    "mode (as MIT's progressive_shrinking.train_one_epoch), NCHW fp32",
        },
        "timing": "rounds; in round r every implementation runs step plan_step(seed, r) once, one after the other "
                  "(order reversed on odd rounds); img_per_s = median over rounds of batch / step wall time; "
                  "img_per_s_pooled = all images / all time; img_per_s_rounds = per round; speedup A/B = median "
                  "over rounds of B's step time / A's (same subnets, adjacent in time); speedup_cpu_time = the same "
                  "in process CPU time",
        "config": dataclasses.asdict(cfg) | {"threads": torch.get_num_threads()},
        "machine": machine(cfg),
        "load": {"start": load_start, "end": load(), "loadavg1_per_round": [round(v, 2) for v in loads],
                 "seconds": round(time.perf_counter() - started, 1)},
        "params_m": {name: r.mparams for name, r in runners.items()} | ({"mit": mit.info["mparams"]} if mit else {}),
        "plans": {kind: [describe(p, space) for p in ps[cfg.warmup:]] for kind, ps in plans.items()},
        **summarize(times, cfg),
    }
    if mit is not None:
        record["mit_implementation"] = mit.info["implementation"]
        if cfg.device == "cpu":
            record["goal"] = {"target": f">= {GOAL}x MIT's step on CPU (ofakit default: channels_last)",
                              "met": all(record["speedup"]["ofakit_channels_last/mit"][k] >= GOAL for k in KINDS)}
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

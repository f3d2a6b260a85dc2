"""Search methods side by side on the shipped reference bundle (issue 18, section 5 (b)): real test top-1 and measured
latency of each method's pick, on cpu-ort, at 3 latency budgets spanning the bundle's range.

Methods (`--methods`): every predictor-scored algorithm (evolution, aging, coarse-to-fine, random, rl; budget
`--budget` archs), the same sampling algorithms scored with the supernet itself (`--score supernet`, budget
`--supernet-budget` archs; "evolution@supernet" ...), and the gradient search (`--gradient-steps` steps). The
supernet-scored ones and the gradient search use no predictor: their data's `train` split is the 5,000 images held
out from the supernet's training (bench/reference/split.py: seed 0, 500 per class of CIFAR-10's training set).

Every pick is BN-recalibrated on those held-out images and evaluated on all 10,000 CIFAR-10 test images, and its
latency measured end to end on cpu-ort (`ofakit.search.verify.measure_subnet_latency`: two interleaved passes with
the table's reference). Budgets: evenly in log between the smallest and largest subnet's estimate (the device's
default latency model, scaled by the drift measured once at the start: every method sees the same limits; `--drift`
gives an earlier run's scale instead, so that one method can be rerun at that run's limits).

    python -m bench.search_methods_bundle --data ../shared/data/cifar10-jpeg.npz
    python -m bench.search_methods_bundle --data ../shared/data/cifar10-jpeg.npz --methods evolution,gradient \\
        --supernet-budget 100 --threads 1

Appends one JSON line per run to bench/results/search_methods_bundle.jsonl and prints a summary JSON line on stdout
(per budget: each method's test top-1, and gradient minus evolution in points); progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
PREDICTOR_METHODS = ("evolution", "aging", "coarse-to-fine", "random", "rl")
SUPERNET_METHODS = ("evolution@supernet", "aging@supernet", "random@supernet", "rl@supernet")
ALL = (*PREDICTOR_METHODS, *SUPERNET_METHODS, "gradient")


def held_out_data(cifar: str, out: Path) -> Path:
    """An array dataset whose train split is the 5,000 held-out images (as bench/reference/split.py picks them) and
    whose val split is CIFAR-10's test set (never read by a search)."""
    import numpy as np

    from ofakit.io import atomic_write_npz
    from ofakit.train.data import load_dataset

    train, test = load_dataset(cifar, "train"), load_dataset(cifar, "val")
    rng = np.random.default_rng(0)
    held = np.sort(np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[:500] for c in range(10)]))
    atomic_write_npz(out, train_images=train.images[held], train_labels=train.labels[held], val_images=test.images,
                     val_labels=test.labels, classes=np.array(train.classes), mean=np.array(train.mean),
                     std=np.array(train.std))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the CIFAR-10 JPEG archive (../shared/data/cifar10-jpeg.npz)")
    p.add_argument("--bundle", default=None)
    p.add_argument("--device", default="cpu-ort")
    p.add_argument("--methods", default=",".join(ALL), help=f"comma list of: {', '.join(ALL)}")
    p.add_argument("--budgets", default="", help="latency budgets in ms (comma list; default: 3 evenly in log "
                                                 "across the bundle's range)")
    p.add_argument("--budget", type=int, default=5000, help="archs per predictor-scored search")
    p.add_argument("--supernet-budget", type=int, default=300, help="archs per supernet-scored search")
    p.add_argument("--gradient-steps", type=int, default=None,
                   help="default: the search's own (ofakit.search.gradient.STEPS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drift", type=float, default=None, help="the latency estimates' scale (default: measured at the "
                                                             "start); give an earlier run's to search its limits")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "search_methods_bundle.jsonl"))
    args = p.parse_args(argv)
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)
    if not Path(args.data).is_file():
        raise SystemExit(f"skip: {args.data} is not there (the CIFAR-10 archive the test top-1 needs)")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ALL]
    if unknown:
        raise SystemExit(f"unknown methods: {', '.join(unknown)}; known: {', '.join(ALL)}")

    import numpy as np
    import torch

    from ofakit.arch import ArchConfig
    from ofakit.bundle import load_bundle
    from ofakit.bundles import resolve_bundle
    from ofakit.io import append_jsonl
    from ofakit.latency.profile import drift_scale
    from ofakit.predict.estimators import estimator_for
    from ofakit.search.gradient import STEPS
    from ofakit.search.specialize import SpecializeConfig, specialize
    from ofakit.search.verify import measure_subnet_latency
    from ofakit.train.data import load_dataset
    from ofakit.train.evaluate import EvalConfig, evaluate_subnet

    torch.set_num_threads(args.threads)
    gradient_steps = STEPS if args.gradient_steps is None else args.gradient_steps
    started = time.perf_counter()
    bundle = resolve_bundle(args.bundle)
    supernet, info = load_bundle(bundle)
    space = supernet.space
    scale = args.drift if args.drift is not None else drift_scale(args.device, space.name)
    est = estimator_for(args.device, space.name, model="auto")
    low, high = (scale * est.estimate(a) for a in (space.smallest(), space.largest()))
    budgets = [float(b) for b in args.budgets.split(",")] if args.budgets else \
        [float(b) for b in np.geomspace(low, high, 5)[1:4]]
    log(f"drift x{scale:.3f}; range {low:.3f}-{high:.3f} ms; budgets {', '.join(f'{b:.3f}' for b in budgets)} ms")
    tmp = tempfile.TemporaryDirectory()
    data = str(held_out_data(args.data, Path(tmp.name) / "heldout.npz"))
    calib, test = load_dataset(data, "train"), load_dataset(data, "val")
    eval_cfg = EvalConfig(batch_size=500, recalibration_batches=16, recalibration_batch_size=128)
    tested: dict[ArchConfig, tuple[float, dict]] = {}
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
               "load_at_start": os.getloadavg()[0]}
    summary: dict[str, dict[str, float]] = {}
    for budget in budgets:
        for method in methods:
            algorithm, _, scored = method.partition("@")
            supernet_scored = scored == "supernet" or algorithm == "gradient"
            cfg = SpecializeConfig(
                device=args.device, latency_ms=budget, algorithm=algorithm, seed=args.seed, latency_model="auto",
                drift="off", latency_scale=scale, score="supernet" if supernet_scored else "predictor",
                data=data if supernet_scored else None,
                budget=gradient_steps if algorithm == "gradient" else
                args.supernet_budget if supernet_scored else args.budget)
            load = os.getloadavg()[0]
            log(f"{budget:.3f} ms: {method} (load {load:.1f}) ...")
            _, report = specialize(bundle, cfg)
            arch = ArchConfig.from_dict(report["arch"])
            if arch not in tested:
                top1 = evaluate_subnet(supernet, arch, calib, test, eval_cfg)
                tested[arch] = (top1, measure_subnet_latency(arch, report))
            top1, latency = tested[arch]
            record = {"bench": "search_methods_bundle", "part": "b", "date": time.strftime("%Y-%m-%d"),
                      "bundle": Path(bundle).name, "device": args.device, "latency_estimator": report["latency_estimator"],
                      "drift_scale": round(scale, 4), "budget_ms": round(budget, 4), "method": method,
                      "algorithm": algorithm, "score": report["score"]["kind"], "seed": args.seed,
                      "search_budget": cfg.budget, "arch": report["arch"],
                      "search_score": report["predicted_accuracy"], "estimated_latency_ms": report["latency_ms"],
                      "test_top1": round(top1, 4), "test_images": len(test),
                      "measured_latency_ms": latency.get("measured_latency_ms"),
                      "wall_time_s": report["wall_time_s"], "evaluations": report["evaluations"],
                      "load_at_start": round(load, 2), "machine": machine}
            append_jsonl(args.out, record)
            summary.setdefault(f"{budget:.3f}", {})[method] = round(100 * top1, 2)
            log(f"  test top-1 {100 * top1:.2f} %, measured {latency.get('measured_latency_ms')} ms, "
                f"{report['evaluations']} evaluations, {report['wall_time_s']:.1f} s")
    gaps = {b: round(row["gradient"] - row["evolution"], 2) for b, row in summary.items()
            if "gradient" in row and "evolution" in row}
    se = 100 * statistics.mean((t * (1 - t) / len(test)) ** 0.5 for t, _ in tested.values()) if tested else None
    print(json.dumps({"bench": "search_methods_bundle", "part": "b", "date": time.strftime("%Y-%m-%d"),
                      "budgets_ms": [round(b, 4) for b in budgets], "test_top1_points": summary,
                      "gradient_minus_evolution_points": gaps, "test_standard_error_points": se,
                      "seconds": round(time.perf_counter() - started, 1), "machine": machine, "out": args.out}))


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

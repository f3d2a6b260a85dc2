"""Specialized subnets vs uniform scaling on the reference bundle: real test accuracy vs measured latency.

    python -m bench.reference.front [--test-data CIFAR10-JPEG.npz] --calib-data RUN-DATA/cifar10-45k.npz \\
        [--bundle ofa-mbv3-cifar10] [--device cpu-ort] [--png bench/reference/front.png]

- specialized: `specialize` (evolution on the bundle's predictor and the device's latency estimator, the learned
  predictor when one is fitted, scaled by the drift measured on the reference model at the start) at budgets
  spaced evenly in log from the smallest subnet's estimate to the largest's, one subnet per budget;
- uniform: the same family scaled uniformly (every block with the same kernel and expand ratio, every stage with
  the same depth) at several settings and resolutions.
Every subnet is BN-recalibrated on training images and evaluated on the whole test split, and measured end to end
on the device (interleaved, both families in one group, so drift hits them alike). Prints one JSON line: the points,
whether the specialized front dominates (for each uniform subnet, a specialized one at most as slow and at least as
accurate), the accuracy gap at matched measured latency, and how far predicted accuracy and latency were from
measured on the front. Needs the test data; skip otherwise.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from bench.reference import DATA_HELP, cifar10_archive
from ofakit.arch import ArchConfig
from ofakit.bundles import resolve_bundle


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=None)
    p.add_argument("--device", default="cpu-ort")
    p.add_argument("--test-data", default=cifar10_archive(), help=DATA_HELP)
    p.add_argument("--calib-data", required=True)
    p.add_argument("--budgets", type=int, default=12, help="latency budgets for specialize")
    p.add_argument("--search-budget", type=int, default=4000)
    p.add_argument("--reps", type=int, default=100, help="rounds per pass of the end-to-end measurement")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--png", default="bench/reference/front.png")
    args = p.parse_args(argv)
    started = time.perf_counter()

    import torch

    from ofakit.bundle import load_bundle
    from ofakit.latency.backends import backend_for
    from ofakit.latency.devices import get_device
    from ofakit.predict.estimators import estimator_for
    from ofakit.latency.profile import drift_scale, reference_runner
    from ofakit.latency.measure import interleaved, statistic
    from ofakit.predict.accuracy import AccuracyPredictor
    from ofakit.search.pareto import pareto_front, plot_fronts
    from ofakit.search.specialize import SpecializeConfig, specialize
    from ofakit.supernet import extract_subnet
    from ofakit.train.data import load_dataset
    from ofakit.train.evaluate import EvalConfig, evaluate_subnet

    torch.set_num_threads(2)
    bundle = resolve_bundle(args.bundle)
    supernet, info = load_bundle(bundle)
    space = supernet.space
    predictor = AccuracyPredictor.load(bundle)
    device = get_device(args.device)
    est = estimator_for(device.name, space.name, model="auto")
    scale = drift_scale(device.name, space.name)
    low, high = (scale * est.estimate(a) for a in (space.smallest(), space.largest()))

    points: dict[str, list] = {"specialized": [], "uniform": []}
    for b in np.geomspace(low * 1.001, high, args.budgets):  # evenly in log: the range spans ~7x
        _, report = specialize(bundle, SpecializeConfig(device=device.name, latency_ms=float(b), latency_model="auto",
                                                        latency_scale=scale, budget=args.search_budget))
        arch = ArchConfig.from_dict(report["arch"])
        if arch not in [a for a, _ in points["specialized"]]:
            points["specialized"].append((arch, float(b)))
    settings = [(3, 3, 2, 24), (3, 3, 2, 28), (3, 3, 2, 32), (3, 4, 2, 32), (3, 4, 3, 32), (5, 4, 3, 32),
                (3, 6, 3, 32), (5, 6, 3, 32), (5, 6, 4, 32), (7, 6, 4, 32)]
    for k, e, d, r in settings:
        points["uniform"].append((space.uniform(kernel=k, expand=e, depth=d, resolution=r), None))

    calib, test = load_dataset(args.calib_data, "train"), load_dataset(args.test_data, "val")
    cfg = EvalConfig(batch_size=500, recalibration_batches=32, recalibration_batch_size=64)
    rows: list[dict] = []
    # each distinct subnet is evaluated and measured once: a uniform setting that specialize also picked is one point
    archs = list(dict.fromkeys(arch for items in points.values() for arch, _ in items))
    top1 = {arch: evaluate_subnet(supernet, arch, calib, test, cfg) for arch in archs}
    for family, items in points.items():
        for arch, budget in items:
            rows.append({"family": family, "arch": arch.to_dict(), "budget_ms": budget,
                         "macs_m": round(space.macs(arch) / 1e6, 2), "params_m": round(space.params(arch) / 1e6, 3),
                         "predicted_top1": float(predictor.predict([arch])[0]),
                         "estimated_ms": float(scale * est.estimate(arch)), "test_top1": top1[arch]})
    # end-to-end latency, every subnet in one interleaved group with the table's reference model (drift now)
    backend = backend_for(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runners = [backend.load(extract_subnet(supernet, a).eval(),
                                (backend.settings.batch, 3, a.resolution, a.resolution)) for a in archs]
        runners.append(reference_runner(backend, space, ArchConfig.from_dict(est.table.meta["reference"]["arch"])))
    passes = [interleaved(runners, warmup=2, reps=args.reps, calls=args.calls) for _ in range(2)]
    ref_now = statistics.median(statistic(p[-1], "p10") for p in passes)  # as validate: the reference's p10
    scale_now = ref_now / est.table.reference_ms
    for row in rows:
        i = archs.index(ArchConfig.from_dict(row["arch"]))
        first, second = (statistic(p[i], est.table.statistic) for p in passes)
        row["measured_ms"] = (first + second) / 2
        row["measured_passes_ms"] = [first, second]
        row["estimated_ms_drift_now"] = row["estimated_ms"] / scale * scale_now

    def front_of(family: str) -> list[dict]:
        rs = [r for r in rows if r["family"] == family]
        idx = pareto_front([r["measured_ms"] for r in rs], [r["test_top1"] for r in rs])
        return [rs[i] for i in idx]

    spec_front = front_of("specialized")
    uniform = sorted((r for r in rows if r["family"] == "uniform"), key=lambda r: r["measured_ms"])
    gaps, dominated = [], 0
    for u in uniform:
        faster = [s["test_top1"] for s in spec_front if s["measured_ms"] <= u["measured_ms"]]
        best = max(faster) if faster else None
        u["specialized_best_at_or_below_ms"] = best
        if best is not None:
            gaps.append(best - u["test_top1"])
            dominated += best >= u["test_top1"]
    spec_all = sorted((r for r in rows if r["family"] == "specialized"), key=lambda r: r["measured_ms"])
    lat_err = [abs(r["estimated_ms"] / r["measured_ms"] - 1) for r in spec_all]
    lat_err_now = [abs(r["estimated_ms_drift_now"] / r["measured_ms"] - 1) for r in spec_all]
    acc_err = [r["predicted_top1"] - r["test_top1"] for r in spec_all]
    result = {
        "bench": "reference_front", "date": time.strftime("%Y-%m-%d"), "bundle": str(bundle), "space": space.name,
        "device": device.name, "latency_estimator": est.name, "drift_scale": round(scale, 4),
        "drift_scale_at_measurement": round(scale_now, 4),
        "estimated_range_ms": [round(low, 4), round(high, 4)],
        "best_test_top1": max(r["test_top1"] for r in rows),
        "uniform_points": len(uniform), "uniform_dominated": dominated,
        "uniform_with_no_faster_specialized": sum(u["specialized_best_at_or_below_ms"] is None for u in uniform),
        "gap_at_matched_latency_points": {"median": 100 * statistics.median(gaps) if gaps else None,
                                          "min": 100 * min(gaps) if gaps else None},
        "specialized_latency_abs_error_pct": {"median": 100 * statistics.median(lat_err), "max": 100 * max(lat_err),
                                              "with_drift_at_measurement": {
                                                  "median": 100 * statistics.median(lat_err_now),
                                                  "max": 100 * max(lat_err_now)}},
        "measurement_noise_pct": {  # the two passes against each other, every subnet
            "median": 100 * statistics.median(abs(r["measured_passes_ms"][1] / r["measured_passes_ms"][0] - 1)
                                              for r in rows),
            "max": 100 * max(abs(r["measured_passes_ms"][1] / r["measured_passes_ms"][0] - 1) for r in rows)},
        "specialized_predicted_minus_test_points": {"median": 100 * statistics.median(acc_err),
                                                    "max_abs": 100 * max(abs(a) for a in acc_err)},
        "points": rows, "seconds": round(time.perf_counter() - started, 1),
    }
    if args.png:
        plot_fronts(args.png, {
            "specialized (ofakit specialize)": ([r["measured_ms"] for r in spec_all],
                                                [100 * r["test_top1"] for r in spec_all]),
            "uniform scaling (same k, e, d)": ([u["measured_ms"] for u in uniform],
                                               [100 * u["test_top1"] for u in uniform]),
        }, xlabel=f"measured latency on {device.name} (ms, batch 1)", ylabel="CIFAR-10 test top-1 (%)",
            title=f"{Path(bundle).name}: specialized vs uniform scaling")
        result["png"] = args.png
    print(json.dumps(result))


if __name__ == "__main__":
    main()

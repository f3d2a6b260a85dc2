"""A new device from a few measurements: each GPU of HELP's measurements left out in turn, at each batch size, and
adapted (`ofakit.predict.adapt`) on 5, 10, 20 and 50 of its subnets over the shipped structural models of the other
two GPUs (all three batch sizes of each: six sources).

Data: HELP's 5,000 OFA MobileNetV3 subnets timed end to end on an RTX 2080 Ti, a Titan Xp and a V100 at batch 1, 32
and 64 (Lee et al., NeurIPS 2021; https://github.com/HayeonLee/HELP, MIT License, Copyright (c) 2024 HayeonLee), in
../shared/data/latency/help-ofa-gpus. Each draw picks the records at random (seeded) and tests on the GPU's other
subnets (4,980 for 20 records); `held_out_only` repeats the test on those of them that no source model was fitted
on either (the 1,000 of the shipped split). It compares with:
- `own`: the same model kind fitted on 4,000 of the GPU's own subnets (the shipped model), on its 1,000 held out;
- `affine`: an affine map (ms) of another GPU's measured latency of the same subnet, fitted on the same records
  (the better and the worse of the two other GPUs).
Goal at 20 records: share within +-10 % and Spearman each within 0.05 of `own`.

    python -m bench.latency_adapt [--data ../shared/data] [--draws 5]

Prints one JSON line; exits 1 when a setting misses the goal.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bench.gpu_latency import data_dir  # noqa: E402

RECORDS = (5, 10, 20, 50)
GOAL_RECORDS = 20
GOAL_GAP = 0.05


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("within_10pct", "spearman")}


def main() -> int:
    from ofakit.metrics import error_metrics
    from ofakit.latency.measure import LatencyRecord
    from ofakit.predict.adapt import adapt
    from ofakit.predict.structural import HELP_GPUS, HELP_SPACE, held_out_split, help_device, load_structural, \
        read_help_gpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="the shared data folder (default: $OFAKIT_SHARED_DATA, else ../shared/data)")
    parser.add_argument("--draws", type=int, default=5, help="random draws of records per setting (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.time()
    archs, latencies = read_help_gpus(data_dir(args.data))
    n = len(archs)
    _, shipped_test = held_out_split(n)
    models = {key: load_structural(help_device(*key), HELP_SPACE) for key in latencies}
    logs = {key: np.log(m.estimate_batch(archs)) for key, m in models.items()}  # every source on every subnet, once
    rng = np.random.default_rng(args.seed)
    settings, ok = {}, True
    for (gpu, batch), ms in latencies.items():
        print(f"{gpu} b{batch} ...", file=sys.stderr, flush=True)
        sources = [key for key in latencies if key[0] != gpu]
        own = error_metrics(np.exp(logs[gpu, batch][shipped_test]), ms[shipped_test])
        out: dict[str, dict] = {}
        for count in RECORDS:
            adapted, held, affine_best, affine_worst, kinds = [], [], [], [], []
            for _ in range(args.draws):
                pick = rng.choice(n, count, replace=False)
                rest = np.setdiff1d(np.arange(n), pick)
                records = [LatencyRecord(archs[i], float(ms[i])) for i in pick]
                model = adapt(help_device(gpu, batch), HELP_SPACE, records,
                              {help_device(*key): models[key] for key in sources})
                z = np.column_stack([logs[key] for key in sources])
                pred = np.exp(model.intercept + z @ model.coef)
                adapted.append(error_metrics(pred[rest], ms[rest]))
                only = np.setdiff1d(shipped_test, pick)
                held.append(error_metrics(pred[only], ms[only]))
                kinds.append(model.meta["kind"])
                affine = []
                for other in HELP_GPUS:
                    if other == gpu:
                        continue
                    x = latencies[other, batch]
                    a, b = np.polyfit(x[pick], ms[pick], 1)
                    affine.append(error_metrics(a * x[rest] + b, ms[rest]))
                affine_best.append(max(affine, key=lambda m: m["within_10pct"]))
                affine_worst.append(min(affine, key=lambda m: m["within_10pct"]))
            out[str(count)] = {"adapted": _mean(adapted), "adapted_held_out_only": _mean(held),
                               "affine_best_other_gpu": _mean(affine_best),
                               "affine_worse_other_gpu": _mean(affine_worst), "kinds": sorted(set(kinds))}
        goal = out[str(GOAL_RECORDS)]["adapted"]
        meets = (goal["within_10pct"] >= own["within_10pct"] - GOAL_GAP
                 and goal["spearman"] >= own["spearman"] - GOAL_GAP)
        ok &= meets
        settings[help_device(gpu, batch)] = {"own_4000": {k: round(own[k], 4) for k in ("within_10pct", "spearman")},
                                             "records": out, "meets_goal_at_20": meets}
    print(json.dumps({"bench": "latency_adapt", "space": HELP_SPACE, "draws": args.draws, "seed": args.seed,
                      "settings": settings, "all_meet_goal": ok, "seconds": round(time.time() - start, 1)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

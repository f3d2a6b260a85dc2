"""Latency accuracy: estimators against end-to-end measurement of random subnets on a device.

Goal (latency issue): >= 95 % of 200 random subnets within +-10 % of measured, on the local CPU device for
`ofa-mbv3-w1.0` (128-224) and `ofa-mbv3-cifar`, and on an H100 with the torch CUDA backend whenever one is available.
Runs `ofakit.latency.validate` (interleaved end-to-end measurement in groups, two passes for the noise floor) against
the device's table and prints one JSON line: the metrics of each estimator (LUT sum, the device's learned latency
predictor when one is fitted, each as is and with drift normalization, and the FLOPs-linear baseline) next to the noise
floor, the reference model's drift and the machine load. The subnets the predictor was fitted on are never drawn.

    python -m bench.latency_accuracy --space ofa-mbv3-w1.0
    python -m bench.latency_accuracy --space ofa-mbv3-cifar
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Sequence

from ofakit.latency.devices import get_device
from ofakit.latency.table import find_table
from ofakit.latency.validate import ValidateConfig, validate
from ofakit.predict.latency import LatencyPredictor, load_predictor
from ofakit.space import get_space


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu-ort")
    p.add_argument("--space", default="ofa-mbv3-w1.0")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reps", type=int, default=ValidateConfig.reps)
    p.add_argument("--calls", type=int, default=ValidateConfig.calls)
    args = p.parse_args(argv)
    device, space = get_device(args.device), get_space(args.space)
    table = find_table(device.name, space.name)
    cfg = ValidateConfig(samples=args.samples, seed=args.seed, reps=args.reps, calls=args.calls)
    predictor = load_predictor(device.name, space.name, fallback=True)
    predictor = predictor if isinstance(predictor, LatencyPredictor) else None
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = validate(device, space, table, cfg, predictor=predictor,
                      on_group=lambda g, n: print(f"group {g}/{n}", file=sys.stderr))
    metrics = {k: {m: round(v, 4) for m, v in d.items()} for k, d in result.metrics().items()}
    print(json.dumps({
        "bench": "latency_accuracy", "date": datetime.date.today().isoformat(), "device": device.name,
        "space": space.name, "table": str(table.path), "table_date": table.meta.get("date"),
        "resolutions": table.resolutions, "samples": len(result.archs), "goal": ">= 95 % within +-10 %",
        "predictor": None if predictor is None else {
            "file": str(predictor.path), "kind": predictor.kind, "records": predictor.meta.get("records"),
            "date": predictor.meta.get("date")},
        "metrics": metrics, "reference": {k: round(v, 4) for k, v in result.reference.items()},
        "config": {"group": cfg.group, "warmup": cfg.warmup, "reps": cfg.reps, "calls": cfg.calls, "seed": cfg.seed},
        "seconds": round(time.perf_counter() - start, 1),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

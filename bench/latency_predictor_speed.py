"""Latency predictor speed: estimating 10,000 random archs at once must take well under a second (the search scores
whole populations with it). Times the LUT sum and the learned predictor (`ofakit latency fit`) of one (device, space)
on the same archs, best of a few repeats, after one warm-up call (which builds the per-resolution arrays).

    python -m bench.latency_predictor_speed [--device cpu-ort] [--space ofa-mbv3-cifar] [--archs 10000]

Prints one JSON line; exits 1 when the predictor takes 1 s or more (a loose bound: the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
    os.environ.setdefault(_var, "1")

LIMIT_S = 1.0


def main() -> int:
    from ofakit.predict.estimators import estimator_for
    from ofakit.space import get_space

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu-ort")
    parser.add_argument("--space", default="ofa-mbv3-cifar")
    parser.add_argument("--archs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    space = get_space(args.space)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(args.archs)]
    seconds = {}
    for model in ("lut", "predictor"):
        est = estimator_for(args.device, args.space, model=model)
        est.estimate_batch(archs[:10])
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            est.estimate_batch(archs)
            times.append(time.perf_counter() - start)
        seconds[model] = round(min(times), 4)
    print(json.dumps({"bench": "latency_predictor_speed", "device": args.device, "space": args.space,
                      "archs": args.archs, "seconds": seconds, "limit_s": LIMIT_S}))
    return 0 if seconds["predictor"] < LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())

"""Many latency budgets in one run: `specialize` with 10 budgets against `specialize` with one (issue 18, section 4).

The goal: 10 budgets in at most 3x the wall time of one, each budget's pick as good as its own single-budget search
(same seed; predicted score within 0.1 points).

Each timed call is `specialize()` in a fresh process (the module imported before the clock starts; every set-up
step and lazy import inside the call counted), one budget and many budgets alternating, `--repeats` times each; the
figure is the ratio of the medians. Then, in this process, every budget is searched on its own with the same seed, and
its predicted score compared with the many-budget run's pick for it; with `--quality-seeds N`, for N seeds from
`--seed` on (the timed runs use `--seed`). With two seeds or more it also counts how often one seed's single-budget
search falls more than 0.1 points below another seed's: the search's own noise, which the misses are read against.

    python -m bench.many_budgets                                  # note10, MIT's tutorial predictor, 20-40 ms
    python -m bench.many_budgets --bundle ofa-mbv3-cifar10 --device cpu-ort --latency 0.4ms:1.2ms:10 --single 0.8ms

Prints one JSON line on stdout, progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_PREDICTOR = ROOT / "tests" / "fixtures" / "ofa" / "acc_predictor_tutorial.pth"


def worker(cfg: dict) -> dict:
    """One specialize() call, timed from the call."""
    from ofakit.search.budgets import parse_latency_budgets
    from ofakit.search.specialize import SpecializeConfig, specialize

    budgets = parse_latency_budgets(cfg["latency"])
    spec = SpecializeConfig(cfg["device"], latency_ms=budgets[0] if len(budgets) == 1 else None,
                            latency_budgets=budgets if len(budgets) > 1 else (), budget=cfg["budget"],
                            seed=cfg["seed"], drift="off", algorithm=cfg["algorithm"])
    started = time.perf_counter()
    _, report = specialize(cfg["bundle"], spec)
    return {"call_s": time.perf_counter() - started, "setup_s": report["setup_s"],
            "evaluations": report["evaluations"],
            "picks": [e["predicted_accuracy"] for e in report.get("budgets", [report])]}


def run_worker(cfg: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cfg, fh)
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", fh.name],
                              capture_output=True, text=True, cwd=ROOT)
    finally:
        os.unlink(fh.name)
    if proc.returncode != 0:
        raise SystemExit(f"the worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", help="bundle (default: MIT's tutorial-format fixture predictor imported for "
                                    "ofa-mbv3-w1.2)")
    p.add_argument("--device", default="note10")
    p.add_argument("--latency", default="20ms:40ms:10", help="the many budgets")
    p.add_argument("--single", default="25ms", help="the one budget timed alone")
    p.add_argument("--algorithm", default="evolution")
    p.add_argument("--budget", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each kind (0: quality only, no timing)")
    p.add_argument("--quality-seeds", type=int, default=1, help="seeds whose picks are compared with their own "
                                                                "searches (from --seed on)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(args.threads))
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return

    sys.path.insert(0, str(ROOT))
    import numpy as np

    from ofakit.bundles import resolve_bundle
    from ofakit.cli.main import main as ofakit_main
    from ofakit.search.budgets import parse_latency_budgets
    from ofakit.search.specialize import SpecializeConfig, specialize

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if args.bundle is None:
            if ofakit_main(["import-ofa", "--predictor", str(DEFAULT_PREDICTOR), "--space", "ofa-mbv3-w1.2",
                            "--out", tmp]):
                raise SystemExit(1)
            bundle = tmp
        else:
            bundle = str(resolve_bundle(args.bundle))
        common = {"bundle": bundle, "device": args.device, "budget": args.budget, "seed": args.seed,
                  "algorithm": args.algorithm}
        one, many = [], []
        for r in range(args.repeats):
            one.append(run_worker({**common, "latency": args.single}))
            many.append(run_worker({**common, "latency": args.latency}))
            print(f"repeat {r}: one {one[-1]['call_s']:.3f} s, many {many[-1]['call_s']:.3f} s", file=sys.stderr)
        budgets = parse_latency_budgets(args.latency)
        quality = []
        for seed in range(args.seed, args.seed + args.quality_seeds):
            spec = {"budget": args.budget, "seed": seed, "drift": "off", "algorithm": args.algorithm}
            _, report = specialize(bundle, SpecializeConfig(args.device, latency_budgets=budgets, **spec))
            picks = [e["predicted_accuracy"] for e in report["budgets"]]
            alone = [specialize(bundle, SpecializeConfig(args.device, latency_ms=b, **spec))[1]["predicted_accuracy"]
                     for b in budgets]
            gaps = [round(100 * (m - a), 4) for m, a in zip(picks, alone)]  # points: pick minus its own search
            quality.append({"seed": seed, "pick_minus_alone_points": gaps, "worst_gap_points": min(gaps),
                            "below_0.1": sum(g < -0.1 for g in gaps), "picks": picks, "alone": alone})
            print(f"seed {seed}: worst {min(gaps):+.2f} points, {quality[-1]['below_0.1']} budgets below -0.1",
                  file=sys.stderr)
    if many and quality[0]["picks"] != many[0]["picks"]:
        raise SystemExit("the timed many-budget run and the in-process one picked differently for the same seed")
    timing = {}
    if many:
        t_one, t_many = (float(np.median([w["call_s"] for w in runs])) for runs in (one, many))
        timing = {"one_s": round(t_one, 3), "many_s": round(t_many, 3), "ratio": round(t_many / t_one, 2),
                  "one_setup_s": float(np.median([w["setup_s"] for w in one])),
                  "many_setup_s": float(np.median([w["setup_s"] for w in many])),
                  "evaluations_one": one[0]["evaluations"], "evaluations_many": many[0]["evaluations"]}
    out = {
        "bench": "many_budgets", "goal": "10 budgets in <= 3x the wall time of one; each pick within 0.1 points of "
                                         "its own single-budget search",
        "date": time.strftime("%Y-%m-%d"),
        "config": {"bundle": args.bundle or "MIT tutorial fixture predictor (ofa-mbv3-w1.2)", "device": args.device,
                   "budgets_ms": list(budgets), "single_ms": args.single, "algorithm": args.algorithm,
                   "budget": args.budget, "seed": args.seed, "repeats": args.repeats, "threads": args.threads},
        "timing": "specialize() call in a fresh process, module imported first; medians over repeats",
        **timing,
        **{k: quality[0][k] for k in ("pick_minus_alone_points", "worst_gap_points", "picks", "alone")},
        "quality_seeds": [{k: q[k] for k in ("seed", "worst_gap_points", "below_0.1", "pick_minus_alone_points")}
                          for q in quality],
        "quality_below_0.1": f"{sum(q['below_0.1'] for q in quality)} of {len(budgets) * len(quality)}",
        **_noise_floor(quality),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "load_average_before": [round(x, 2) for x in load],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
    }
    print(json.dumps(out))


def _noise_floor(quality: list[dict]) -> dict:
    """How often one single-budget search falls more than 0.1 points below another seed's (seed i's against seed
    i+1's, cyclically): the search's own noise, against which the many-budget misses are read. Needs 2 seeds."""
    if len(quality) < 2:
        return {}
    nxt = quality[1:] + quality[:1]
    pairs = [100 * (a - b) for q, r in zip(quality, nxt) for a, b in zip(q["alone"], r["alone"])]
    return {"single_vs_other_seed_below_0.1": f"{sum(g < -0.1 for g in pairs)} of {len(pairs)}",
            "single_vs_other_seed_worst_points": round(min(pairs), 4)}


if __name__ == "__main__":
    main()

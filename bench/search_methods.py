"""Search methods side by side (issue 18, section 5).

Part (a): the predictor-scored algorithms on MIT's once-for-all accuracy-predictor format (by default the
tutorial-format fixture in tests/fixtures/ofa, imported with `ofakit import-ofa --predictor`; `--predictor` takes
another .pth of that format) and the Note10 table at 25 ms: evolution, aging evolution, coarse-to-fine, random, the
REINFORCE controller with the hard reward and with MnasNet's soft one. Each runs through `specialize()` with the same
budget for `--seeds` seeds; its anytime record (`SearchResult.anytime`: after each scored batch, the predictor
evaluations so far, the best feasible score, the seconds since the search began) gives:
- the best feasible predicted accuracy against the number of predictor evaluations (median, min and max over seeds,
  at fixed evaluation counts);
- the search's wall time to reach 99.9 % of the best score any method found in any seed (median over the seeds that
  reach it, and how many do), and the same for the best any method found with the same seed ("seed_999");
- a PNG of the median anytime curves with their min-max band (`--png`).

Part (b) (the reference bundle on cpu-ort, real test top-1) is bench/search_methods_bundle.py.

    python -m bench.search_methods --part a
    python -m bench.search_methods --part a --budget 20000 --seeds 5 --png bench/results/search_methods_a.png

Prints one JSON line on stdout, progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_PREDICTOR = ROOT / "tests" / "fixtures" / "ofa" / "acc_predictor_tutorial.pth"
SPACE = "ofa-mbv3-w1.2"
METHODS = {  # name: (algorithm, reward)
    "evolution": ("evolution", "hard"), "aging": ("aging", "hard"), "coarse-to-fine": ("coarse-to-fine", "hard"),
    "random": ("random", "hard"), "rl": ("rl", "hard"), "rl+mnas": ("rl", "mnas"),
}
CHECKPOINTS = (100, 200, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 50000)


def part_a(args: argparse.Namespace) -> dict:
    import numpy as np

    from ofakit.cli.main import main as ofakit_main
    from ofakit.search.specialize import SpecializeConfig, specialize

    curves: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    finals: dict[str, list[dict]] = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory() as bundle:
        if ofakit_main(["import-ofa", "--predictor", str(args.predictor), "--space", SPACE, "--out", bundle]):
            raise SystemExit(1)
        for method, (algorithm, reward) in METHODS.items():
            for seed in range(args.seeds):
                result, report = specialize(bundle, SpecializeConfig(
                    args.device, latency_ms=args.limit_ms, algorithm=algorithm, reward=reward, budget=args.budget,
                    seed=seed, drift="off", latency_model="lut"))
                curves[method].append(result.anytime)
                finals[method].append({"seed": seed, "score": report["predicted_accuracy"],
                                       "latency_ms": report["latency_ms"], "evaluations": report["evaluations"],
                                       "search_s": round(float(result.wall_time_s), 4)})
            print(f"{method}: final {[f['score'] for f in finals[method]]}", file=sys.stderr)
    best = max(float(c[:, 1].max()) for cs in curves.values() for c in cs)
    target = 0.999 * best
    per_seed = [0.999 * max(float(cs[seed][:, 1].max()) for cs in curves.values()) for seed in range(args.seeds)]
    checkpoints = [n for n in CHECKPOINTS if n <= args.budget]
    table = {}
    for method, cs in curves.items():
        at = np.array([[_best_within(c, n) for n in checkpoints] for c in cs])  # [seeds, checkpoints]
        reached = [t for t in (_time_to(c, target) for c in cs) if t is not None]
        own = [t for t in (_time_to(c, goal) for c, goal in zip(cs, per_seed)) if t is not None]
        table[method] = {
            **{k: [_over_seeds(fn, at[:, j]) for j in range(len(checkpoints))]
               for k, fn in (("median", np.median), ("min", np.min), ("max", np.max))},
            "time_to_999_s_median": round(float(np.median(reached)), 4) if reached else None,
            "seeds_reaching_999": len(reached),
            "time_to_seed_999_s_median": round(float(np.median(own)), 4) if own else None,
            "seeds_reaching_seed_999": len(own),
            "final": finals[method],
            "final_median": _round(float(np.median([f["score"] for f in finals[method]]))),
            "evaluations_median": int(np.median([f["evaluations"] for f in finals[method]])),
            "search_s_median": round(float(np.median([f["search_s"] for f in finals[method]])), 4),
        }
    if args.png:
        _plot(args.png, curves, checkpoints, table, args)
    return {"part": "a", "evaluation_checkpoints": checkpoints, "best_any": _round(best),
            "target_999": _round(target), "seed_targets_999": [_round(t) for t in per_seed], "methods": table}


def _best_within(anytime, n: int) -> float:
    """The best feasible score after at most `n` predictor evaluations (NaN before the first scored batch)."""
    import numpy as np

    done = np.flatnonzero(anytime[:, 0] <= n)
    return float(anytime[done[-1], 1]) if done.size else float("nan")


def _time_to(anytime, target: float) -> float | None:
    import numpy as np

    hit = np.flatnonzero(anytime[:, 1] >= target)
    return float(anytime[hit[0], 2]) if hit.size else None


def _over_seeds(fn, values) -> float | None:
    """`fn` over the seeds that have scored something by then (None where none has)."""
    import numpy as np

    values = values[~np.isnan(values)]
    return _round(float(fn(values))) if values.size else None


def _round(value: float) -> float | None:
    return None if value != value else round(float(value), 6)


def _plot(path: Path, curves: dict, checkpoints: list[int], table: dict, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method in curves:
        row = table[method]
        med, lo, hi = (np.array([np.nan if v is None else 100 * v for v in row[k]]) for k in ("median", "min", "max"))
        ax.plot(checkpoints, med, marker="o", markersize=3, label=method)
        ax.fill_between(checkpoints, lo, hi, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("predictor evaluations")
    ax.set_ylabel("best feasible predicted top-1 (%)")
    ax.set_title(f"{SPACE} on {args.device} at {args.limit_ms:g} ms: median and min-max over {args.seeds} seeds",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("a", "b"), default="a")
    p.add_argument("--predictor", type=Path, default=DEFAULT_PREDICTOR, help="MIT tutorial-format acc_predictor.pth")
    p.add_argument("--device", default="note10")
    p.add_argument("--limit-ms", type=float, default=25.0)
    p.add_argument("--budget", type=int, default=20000, help="archs per search")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--png", type=Path, help="write the anytime curves here")
    args = p.parse_args(argv)
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(args.threads))
    if args.part == "b":
        raise SystemExit("part b (the reference bundle on cpu-ort) is bench/search_methods_bundle.py: "
                         "python -m bench.search_methods_bundle --data ../shared/data/cifar10-jpeg.npz")
    sys.path.insert(0, str(ROOT))
    import numpy as np

    load = os.getloadavg()
    started = time.perf_counter()
    out = part_a(args)
    print(json.dumps({
        "bench": "search_methods", "date": time.strftime("%Y-%m-%d"),
        "config": {"space": SPACE, "device": args.device, "limit_ms": args.limit_ms, "budget": args.budget,
                   "seeds": args.seeds, "predictor": args.predictor.name, "threads": args.threads,
                   "methods": {m: {"algorithm": a, "reward": r} for m, (a, r) in METHODS.items()}},
        **out,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "load_average_before": [round(x, 2) for x in load],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
    }))


if __name__ == "__main__":
    main()

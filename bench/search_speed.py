"""Search speed: ofakit's evolutionary search vs MIT's `EvolutionFinder` (once-for-all tutorial), side by side.

Both searches maximise the same accuracy predictor (a MIT tutorial-format MLP; by default the randomly initialised
one that MIT's own class built for tests/fixtures/ofa, imported into ofakit with `ofakit import-ofa --predictor`)
under the same Note10 latency limit (default 25 ms), with the same budget and settings (population 100, 500
generations, 25 % parents, 100 children per generation of which half by mutation, mutation probability 0.1).
MIT's side runs in a subprocess under MIT's venv with MIT's own code: `ofa.tutorial.AccuracyPredictor` loading the
same .pth, and `ofa.tutorial.LatencyTable`/`LatencyEstimator` summing MIT's Note10 YAML tables (read from a local
folder; when it is absent, MIT's estimator is given ofakit's table with MIT's keys). Timed: the search call only (imports, predictor and
table loading excluded on both sides). Both winners are re-scored with ofakit's imported predictor and LUT.

    python -m bench.search_speed                          # MIT via /work/ofa-venv/bin/python
    python -m bench.search_speed --seeds 3 --mit-python PATH
    python -m bench.search_speed --seeds 3 --threads 2    # BLAS / torch threads of both sides

Prints one JSON line on stdout, progress on stderr. MIT's worker mode (`--mit-worker`) imports only MIT's code.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # set before numpy / torch load

ROOT = Path(__file__).resolve().parents[1]
SPACE = "ofa-mbv3-w1.2"
DEVICE = "note10"
DEFAULT_PREDICTOR = ROOT / "tests" / "fixtures" / "ofa" / "acc_predictor_tutorial.pth"
DEFAULT_MIT_YAML = ROOT.parent / "shared" / "data" / "latency" / "note10-ofa-mbv3-w1.2"
MIT_RESOLUTIONS = (160, 176, 192, 208, 224)  # MIT's tutorial ArchManager


# -- MIT's side (runs under MIT's venv; imports nothing from ofakit) ---------------------------------------------
def mit_worker(cfg: dict) -> dict:
    import numpy as np
    import torch
    import yaml
    from ofa.tutorial.accuracy_predictor import AccuracyPredictor
    from ofa.tutorial.evolution_finder import EvolutionFinder
    from ofa.tutorial.latency_table import LatencyEstimator, LatencyTable

    torch.set_num_threads(cfg["threads"])
    predictor = AccuracyPredictor(pretrained=False, device="cpu")
    predictor.model.load_state_dict(torch.load(cfg["predictor"], map_location="cpu", weights_only=True))

    # MIT's LatencyTable downloads its YAMLs and reads them with yaml.load(fp), which PyYAML >= 6 refuses without a
    # Loader; build the same objects around local tables instead. The lookups and sums are MIT's code.
    table = LatencyTable.__new__(LatencyTable)
    table.latency_tables = {}
    for r in MIT_RESOLUTIONS:
        est = LatencyEstimator.__new__(LatencyEstimator)
        if cfg["mit_lut"] is None:
            with open(Path(cfg["yaml_dir"]) / f"{r}_lookup_table.yaml") as fh:
                est.lut = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        else:
            est.lut = cfg["mit_lut"][str(r)]
        table.latency_tables[r] = est

    counts = {"efficiency": 0, "accuracy": 0}
    predict_efficiency, predict_accuracy = table.predict_efficiency, predictor.predict_accuracy

    def efficiency(spec: dict) -> float:
        counts["efficiency"] += 1
        return predict_efficiency(spec)

    def accuracy(population: list) -> torch.Tensor:
        counts["accuracy"] += len(population)
        return predict_accuracy(population)

    table.predict_efficiency, predictor.predict_accuracy = efficiency, accuracy
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    finder = EvolutionFinder("note10", cfg["limit_ms"], table, predictor, mutate_prob=0.1,
                             population_size=cfg["population"], max_time_budget=cfg["generations"],
                             parent_ratio=0.25, mutation_ratio=0.5)
    started = time.perf_counter()
    _, best = finder.run_evolution_search(verbose=False)
    wall = time.perf_counter() - started
    acc, spec, latency = best
    return {"wall_time_s": wall, "best_score": float(acc), "best_latency_ms": float(latency),
            "best": {"ks": spec["ks"], "e": spec["e"], "d": spec["d"], "r": spec["r"][0]},
            "latency_calls": counts["efficiency"], "accuracy_calls": counts["accuracy"],
            "table": "MIT YAML " + str(cfg["yaml_dir"]) if cfg["mit_lut"] is None else "ofakit JSON, MIT keys",
            "torch": torch.__version__}


def _mit_lut_from_ofakit(table) -> dict[str, dict]:
    """MIT-keyed LUTs ({resolution: {MIT key: {"mean": ms}}}) from ofakit's table, for MIT's LatencyEstimator."""
    from ofakit.latency.mit import mit_key
    from ofakit.latency.table import parse_layer_key

    return {str(r): {mit_key(parse_layer_key(k), "ofa"): {"mean": table.ms(r, k)} for k in table.entries[r]}
            for r in MIT_RESOLUTIONS}


def run_mit(python: str, cfg: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cfg, fh)
    try:
        env = dict(os.environ, TQDM_DISABLE="1")
        proc = subprocess.run([python, str(Path(__file__).resolve()), "--mit-worker", fh.name], capture_output=True,
                              text=True, env=env, cwd=ROOT)
    finally:
        os.unlink(fh.name)
    if proc.returncode != 0:
        raise SystemExit(f"MIT's worker failed ({python}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- ofakit's side -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--predictor", type=Path, default=DEFAULT_PREDICTOR, help="MIT tutorial-format acc_predictor.pth")
    p.add_argument("--mit-python", default="/work/ofa-venv/bin/python", help="interpreter with MIT's ofa package")
    p.add_argument("--mit-yaml", type=Path, default=DEFAULT_MIT_YAML,
                   help="folder of MIT's <resolution>_lookup_table.yaml (Note10); else ofakit's table is used")
    p.add_argument("--limit-ms", type=float, default=25.0)
    p.add_argument("--population", type=int, default=100)
    p.add_argument("--generations", type=int, default=500)
    p.add_argument("--seeds", type=int, default=1, help="runs per side, seeds 0..N-1")
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch threads of each side (default 1)")
    p.add_argument("--mit-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(args.threads))
    if args.mit_worker:
        print(json.dumps(mit_worker(json.loads(Path(args.mit_worker).read_text()))))
        return

    sys.path.insert(0, str(ROOT))
    import numpy as np

    from ofakit.arch import ArchConfig
    from ofakit.cli.main import main as ofakit_main
    from ofakit.predict.estimators import estimator_for
    from ofakit.predict.accuracy import AccuracyPredictor
    from ofakit.predict.ofa_predictor import predictor_space
    from ofakit.search.constraints import latency_limit
    from ofakit.search.evolution import EvolutionConfig, evolve
    from ofakit.space import get_space
    from ofakit.space.genome import Genome

    with tempfile.TemporaryDirectory() as tmp:
        code = ofakit_main(["import-ofa", "--predictor", str(args.predictor), "--space", SPACE, "--out", tmp])
        if code:
            raise SystemExit(code)
        pred = AccuracyPredictor.load(tmp)
    space = get_space(SPACE)
    search_space = predictor_space(pred, space)
    estimator = estimator_for(DEVICE, SPACE)
    use_yaml = args.mit_yaml.is_dir()
    mit_lut = None if use_yaml else _mit_lut_from_ofakit(estimator.table)

    def rescore(arch: ArchConfig) -> dict:
        return {"score": float(pred.predict([arch])[0]), "latency_ms": float(estimator.estimate(arch))}

    spent = {"predictor_s": 0.0, "latency_s": 0.0}  # where ofakit's time goes (timers cost ~1 us a call)

    def timed(fn, key):
        def call(rows):
            t = time.perf_counter()
            try:
                return fn(rows)
            finally:
                spent[key] += time.perf_counter() - t
        return call

    def ofakit_search(seed: int) -> dict:
        spent.update(predictor_s=0.0, latency_s=0.0)
        started = time.perf_counter()
        genome = Genome(search_space)  # set-up counted in ofakit's time: the row layout and the predictor's map
        score = pred.for_rows(genome)
        limit = latency_limit(f"latency_ms@{DEVICE}", args.limit_ms, estimator, genome)
        setup = time.perf_counter() - started
        limit = dataclasses.replace(limit, cost=timed(limit.cost, "latency_s"))
        cfg = EvolutionConfig(population=args.population, generations=args.generations)
        result = evolve(genome, timed(score, "predictor_s"), [limit], cfg, np.random.default_rng(seed))
        wall = time.perf_counter() - started
        split = {k: round(v, 3) for k, v in spent.items() if v or k == "predictor_s"}
        split["setup_s"] = round(setup, 3)
        split["search_loop_s"] = round(wall - sum(spent.values()) - setup, 3)
        return {"wall_time_s": round(wall, 3), "time_split": split, "evaluations": result.evaluations,
                "best": result.best.to_dict(), **{k: round(v, 6) for k, v in rescore(result.best).items()}}

    runs = []
    for seed in range(args.seeds):
        ours = ofakit_search(seed)
        print(f"seed {seed}: ofakit {ours['wall_time_s']:.2f} s", file=sys.stderr)
        mit = run_mit(args.mit_python, {"predictor": str(args.predictor), "yaml_dir": str(args.mit_yaml),
                                        "mit_lut": mit_lut, "limit_ms": args.limit_ms, "seed": seed,
                                        "population": args.population, "generations": args.generations,
                                        "threads": args.threads})
        b = mit["best"]
        mit_arch = ArchConfig(SPACE, b["r"], tuple(b["d"]), tuple(b["ks"]), tuple(b["e"]))
        theirs = rescore(mit_arch)
        ours["ratio"] = round(mit["wall_time_s"] / ours["wall_time_s"], 2)
        print(f"seed {seed}: MIT {mit['wall_time_s']:.2f} s; ratio {ours['ratio']:.1f}x; score ofakit "
              f"{ours['score']:.5f} MIT {theirs['score']:.5f}", file=sys.stderr)
        runs.append({
            "seed": seed, "ofakit": ours,
            "mit": {"wall_time_s": round(mit["wall_time_s"], 3), "latency_calls": mit["latency_calls"],
                    "accuracy_calls": mit["accuracy_calls"], "best": mit_arch.to_dict(),
                    **{k: round(v, 6) for k, v in theirs.items()},
                    "own_score": round(mit["best_score"], 6), "own_latency_ms": round(mit["best_latency_ms"], 6)},
        })
    out = {
        "bench": "search_speed", "date": time.strftime("%Y-%m-%d"),
        "config": {"space": SPACE, "device": DEVICE, "limit_ms": args.limit_ms, "population": args.population,
                   "generations": args.generations, "parents": 0.25, "mutation_share": 0.5, "mutation_prob": 0.1,
                   "predictor": args.predictor.name, "predictor_encoding": pred.encoding,
                   "resolutions": list(search_space.resolutions), "seeds": args.seeds, "threads": args.threads},
        "timing": "wall time of the search call (ofakit: with its set-up, the genome and the predictor's row "
                  "map); ratio = MIT / ofakit; score and latency_ms = the winner re-scored with ofakit's imported "
                  "predictor (float64, per arch) and LUT; ofakit time_split: setup, predictor (one-hot rows + "
                  "float32 MLP), latency (LUT gathers), search_loop (mutation, crossover, keys, de-duplication, "
                  "sorting)",
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "mit_torch": mit["torch"], "mit_table": mit["table"]},
        "ratio_median": float(np.median([r["ofakit"]["ratio"] for r in runs])),
        "ratio_min": min(r["ofakit"]["ratio"] for r in runs),
        "score_ofakit_minus_mit_median": round(float(np.median([r["ofakit"]["score"] - r["mit"]["score"]
                                                                for r in runs])), 6),
        "ofakit_not_worse": sum(r["ofakit"]["score"] >= r["mit"]["score"] - 1e-9 for r in runs),
        "runs": runs,
    }
    print(json.dumps(out))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()

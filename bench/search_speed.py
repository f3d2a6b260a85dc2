"""Search speed: time for ofakit's `specialize()` to find a subnet as good as MIT's `EvolutionFinder`, side by side.

The goal (issue 18): ofakit's in-process time, from the `specialize()` call with every set-up step included (bundle,
device, latency table, predictor, genome) until its best feasible predicted score first reaches the final score of
MIT's whole `run_evolution_search`, is at least 100x shorter than MIT's search; and ofakit's final score is never
below MIT's.

Both maximise the same accuracy predictor (a MIT tutorial-format MLP; by default the randomly initialised one that
MIT's own class built for tests/fixtures/ofa, imported into a bundle with `ofakit import-ofa --predictor`) under the
same Note10 latency limit (default 25 ms). MIT's side runs in a subprocess under MIT's venv with MIT's own code:
`ofa.tutorial.AccuracyPredictor` loading the same .pth, `ofa.tutorial.LatencyTable`/`LatencyEstimator` summing MIT's
Note10 YAML tables (read from a local folder; when it is absent, MIT's estimator is given ofakit's table with MIT's
keys), population 100, 500 generations, its own parent and mutation settings; its search call alone is timed.

ofakit's side runs `specialize(bundle, SpecializeConfig("note10", latency_ms=..., budget=50,000, drift="off",
latency_model="lut"))` per seed in a fresh process ("cold": the lazy imports and every load inside the call count;
ofakit's modules are byte-compiled first, as an installed package's are), then again in the same process ("warm":
what a long-lived process pays); `--repeats` fresh processes per seed (default 3), each time the median over them,
since one run of ~0.1 s moves with a shared machine's load far more than MIT's search of ~10 s. Its time to MIT's
score is the report's `setup_s` plus the search's anytime record (`SearchResult.anytime`: after each scored
generation, the archs scored, the best feasible score, the seconds since the search began) at the first generation
whose best reaches the score of MIT's winner, both scored by the bundle's predictor as the search scores rows. Both
winners are also re-scored with ofakit's predictor and LUT arch by arch.

    python -m bench.search_speed                          # 5 seeds, MIT via $OFAKIT_MIT_PYTHON
    python -m bench.search_speed --seeds 1 --mit-python PATH
    python -m bench.search_speed --threads 2              # BLAS / torch threads of both sides
    python -m bench.search_speed --repeats 1              # one fresh ofakit process per seed
    python -m bench.search_speed --baseline DIR           # and an older ofakit tree's, side by side

Prints one JSON line on stdout, progress on stderr. MIT's worker mode (`--mit-worker`) imports only MIT's code.
"""
from __future__ import annotations

import argparse
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
SHARED_DATA = Path(os.environ.get("OFAKIT_SHARED_DATA") or ROOT.parent / "shared" / "data")  # the dev data folder
DEFAULT_MIT_YAML = SHARED_DATA / "latency" / "note10-ofa-mbv3-w1.2"
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


# -- ofakit's side (a fresh process per seed) -----------------------------------------------------------------
def ofakit_worker(cfg: dict) -> dict:
    """specialize() cold, then warm, with the time each took to reach `cfg["target_arch"]`'s score."""
    started = time.perf_counter()
    from ofakit.search.specialize import SpecializeConfig, specialize  # the module import: not counted

    import_s = time.perf_counter() - started
    spec = SpecializeConfig(DEVICE, latency_ms=cfg["limit_ms"], budget=cfg["budget"], seed=cfg["seed"],
                            drift="off", latency_model="lut", population=cfg["population"])
    runs = {}
    for kind in ("cold", "warm"):
        t = time.perf_counter()
        result, report = specialize(cfg["bundle"], spec)
        runs[kind] = {"call_s": time.perf_counter() - t, "result": result, "report": report}
    # outside the timing: the target in the search's own scoring (the bundle's predictor on genome rows)
    import numpy as np

    from ofakit.arch import ArchConfig
    from ofakit.predict.accuracy import AccuracyPredictor

    result = runs["cold"]["result"]
    target_arch = ArchConfig.from_dict(cfg["target_arch"])
    score = AccuracyPredictor.load(cfg["bundle"]).for_rows(result.genome)
    target = float(score(result.genome.encode([target_arch]))[0])
    out = {"module_import_s": round(import_s, 4), "target_score": round(target, 6)}
    for kind, run in runs.items():
        anytime, setup = run["result"].anytime, run["report"]["setup_s"]
        reached = np.flatnonzero(anytime[:, 1] >= target - 1e-12)
        first = anytime[reached[0]] if reached.size else None
        out[kind] = {
            "time_to_mit_score_s": round(setup + float(first[2]), 4) if first is not None else None,
            "evaluations_to_mit_score": int(first[0]) if first is not None else None,
            "setup_s": setup, "call_s": round(run["call_s"], 4), "evaluations": run["report"]["evaluations"],
            "final_score": round(float(run["result"].score), 6), "best": run["report"]["arch"],
        }
    return out


def run_worker(python: str, flag: str, cfg: dict, env: dict | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cfg, fh)
    try:
        proc = subprocess.run([python, str(Path(__file__).resolve()), flag, fh.name], capture_output=True,
                              text=True, env=dict(os.environ, TQDM_DISABLE="1", **(env or {})), cwd=ROOT)
    finally:
        os.unlink(fh.name)
    if proc.returncode != 0:
        raise SystemExit(f"the {flag} worker failed ({python}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--predictor", type=Path, default=DEFAULT_PREDICTOR, help="MIT tutorial-format acc_predictor.pth")
    p.add_argument("--mit-python", default=os.environ.get("OFAKIT_MIT_PYTHON"),
                   help="interpreter with MIT's ofa package (default: $OFAKIT_MIT_PYTHON)")
    p.add_argument("--mit-yaml", type=Path, default=DEFAULT_MIT_YAML,
                   help="folder of MIT's <resolution>_lookup_table.yaml (Note10); else ofakit's table is used")
    p.add_argument("--limit-ms", type=float, default=25.0)
    p.add_argument("--population", type=int, default=100)
    p.add_argument("--generations", type=int, default=500, help="MIT's generations")
    p.add_argument("--budget", type=int, default=50_000, help="ofakit's budget in archs (its final score)")
    p.add_argument("--seeds", type=int, default=5, help="runs per side, seeds 0..N-1")
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch threads of each side (default 1)")
    p.add_argument("--repeats", type=int, default=3,
                   help="fresh ofakit processes per seed; each time is the median over them (default 3)")
    p.add_argument("--baseline", type=Path,
                   help="an older ofakit tree (ofakit/, devices/, latency_tables/; e.g. `git archive COMMIT ofakit "
                        "devices latency_tables | tar -x -C DIR`) timed beside the current one, its processes "
                        "alternating with the current tree's: a before/after at the same load")
    p.add_argument("--mit-worker", help=argparse.SUPPRESS)
    p.add_argument("--ofakit-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(args.threads))
    if args.mit_worker or args.ofakit_worker:
        worker, path = (mit_worker, args.mit_worker) if args.mit_worker else (ofakit_worker, args.ofakit_worker)
        print(json.dumps(worker(json.loads(Path(path).read_text()))))
        return

    if not args.mit_python:
        p.error("MIT's side needs a python with MIT's ofa package: pass --mit-python or set OFAKIT_MIT_PYTHON")
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from ofakit.arch import ArchConfig
    from ofakit.cli.main import main as ofakit_main
    from ofakit.predict.accuracy import AccuracyPredictor
    from ofakit.predict.estimators import estimator_for

    # ofakit's modules byte-compiled, as an installed package has them: where PYTHONDONTWRITEBYTECODE is set (as on
    # the development VM), a module edited since its .pyc was written is otherwise compiled again inside the clock
    # of every cold call that imports it lazily (~20 ms for the latency table's module)
    import compileall

    compileall.compile_dir(ROOT / "ofakit", quiet=1)
    if args.baseline:
        if not (args.baseline / "ofakit" / "search" / "specialize.py").is_file():
            p.error(f"--baseline {args.baseline}: no ofakit tree there (expected ofakit/search/specialize.py)")
        compileall.compile_dir(args.baseline / "ofakit", quiet=1)
    estimator = estimator_for(DEVICE, SPACE)
    mit_lut = None if args.mit_yaml.is_dir() else _mit_lut_from_ofakit(estimator.table)
    load = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory() as bundle:
        code = ofakit_main(["import-ofa", "--predictor", str(args.predictor), "--space", SPACE, "--out", bundle])
        if code:
            raise SystemExit(code)
        pred = AccuracyPredictor.load(bundle)

        def rescore(arch: ArchConfig) -> dict:
            return {"score": round(float(pred.predict([arch])[0]), 6),
                    "latency_ms": round(float(estimator.estimate(arch)), 4)}

        for seed in range(args.seeds):
            mit = run_worker(args.mit_python, "--mit-worker", {
                "predictor": str(args.predictor), "yaml_dir": str(args.mit_yaml), "mit_lut": mit_lut,
                "limit_ms": args.limit_ms, "seed": seed, "population": args.population,
                "generations": args.generations, "threads": args.threads})
            b = mit["best"]
            mit_arch = ArchConfig(SPACE, b["r"], tuple(b["d"]), tuple(b["ks"]), tuple(b["e"]))
            work = {"bundle": bundle, "limit_ms": args.limit_ms, "budget": args.budget, "seed": seed,
                    "population": args.population, "target_arch": mit_arch.to_dict()}
            repeats, before = [], []
            for _ in range(args.repeats):  # with a baseline, its processes alternate with the current tree's
                repeats.append(run_worker(sys.executable, "--ofakit-worker", work))
                if args.baseline:
                    before.append(run_worker(sys.executable, "--ofakit-worker", work,
                                             env={"PYTHONPATH": str(args.baseline)}))
            ours = _median_of(repeats)
            for kind in ("cold", "warm"):
                t = ours[kind]["time_to_mit_score_s"]
                ours[kind]["ratio"] = round(mit["wall_time_s"] / t, 1) if t else None
                ours[kind].update(rescore(ArchConfig.from_dict(ours[kind]["best"])))
            if before:
                ours["baseline"] = _median_of(before)
                for kind in ("cold", "warm"):
                    t = ours["baseline"][kind]["time_to_mit_score_s"]
                    ours["baseline"][kind]["ratio"] = round(mit["wall_time_s"] / t, 1) if t else None
                print(f"seed {seed}: baseline {ours['baseline']['cold']['time_to_mit_score_s']} s cold "
                      f"({ours['baseline']['cold']['ratio']}x), {ours['baseline']['warm']['time_to_mit_score_s']} "
                      f"s warm ({ours['baseline']['warm']['ratio']}x)", file=sys.stderr)
            theirs = rescore(mit_arch)
            ours["not_below_mit"] = ours["cold"]["score"] >= theirs["score"] - 1e-9
            print(f"seed {seed}: MIT {mit['wall_time_s']:.2f} s to {theirs['score']:.6f}; ofakit reaches it in "
                  f"{ours['cold']['time_to_mit_score_s']} s cold ({ours['cold']['ratio']}x), "
                  f"{ours['warm']['time_to_mit_score_s']} s warm ({ours['warm']['ratio']}x); final "
                  f"{ours['cold']['score']:.6f}", file=sys.stderr)
            runs.append({"seed": seed, "ofakit": ours, "mit": {
                "wall_time_s": round(mit["wall_time_s"], 3), "latency_calls": mit["latency_calls"],
                "accuracy_calls": mit["accuracy_calls"], "best": mit_arch.to_dict(), **theirs,
                "own_score": round(mit["best_score"], 6), "own_latency_ms": round(mit["best_latency_ms"], 4)}})

    def ratios(kind: str) -> list[float | None]:
        return [r["ofakit"][kind]["ratio"] for r in runs]

    out = {
        "bench": "search_speed", "goal": "time to MIT's final score >= 100x shorter than MIT's search, final score "
                                         "never below MIT's",
        "date": time.strftime("%Y-%m-%d"),
        "config": {"space": SPACE, "device": DEVICE, "limit_ms": args.limit_ms, "population": args.population,
                   "mit_generations": args.generations, "ofakit_budget": args.budget, "repeats": args.repeats,
                   "predictor": args.predictor.name,
                   "predictor_encoding": pred.encoding, "seeds": args.seeds, "threads": args.threads},
        "timing": "MIT: its run_evolution_search call; ofakit: from the specialize() call (cold: the first in a fresh "
                  "process, the module imported before; warm: the second; each the median over --repeats fresh "
                  "processes, all listed in *_runs) until its best feasible score first "
                  "reaches MIT's winner's = setup_s + the anytime record's seconds; ratio = MIT / ofakit; score and "
                  "latency_ms: winners re-scored arch by arch with ofakit's imported predictor and LUT; ofakit's "
                  ".pyc files written before the runs (compileall), as an installed package has them",
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "mit_table": mit["table"], "mit_torch": mit["torch"],
                    "load_average_before": [round(x, 2) for x in load],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "ratio_cold_median": _median(ratios("cold")), "ratio_cold_min": _min(ratios("cold")),
        "ratio_warm_median": _median(ratios("warm")), "ratio_warm_min": _min(ratios("warm")),
        "seeds_reaching_mit": sum(r is not None for r in ratios("cold")),
        **({"baseline": {"tree": str(args.baseline), **{
            f"ratio_{kind}_{stat}": f([r["ofakit"]["baseline"][kind]["ratio"] for r in runs])
            for kind in ("cold", "warm") for stat, f in (("median", _median), ("min", _min))}}}
           if args.baseline else {}),
        "ofakit_not_below_mit": sum(r["ofakit"]["not_below_mit"] for r in runs),
        "runs": runs,
    }
    print(json.dumps(out))


def _median_of(repeats: list[dict]) -> dict:
    """The first worker's record (the same seed searches alike in every process), with its times the median over
    the fresh processes of `repeats` and each process's listed: one run of ~0.1 s moves with the shared machine's
    load far more than MIT's search of ~10 s does."""
    import numpy as np

    out = repeats[0]
    for kind in ("cold", "warm"):
        for key in ("time_to_mit_score_s", "setup_s", "call_s"):
            values = [r[kind][key] for r in repeats]
            out[kind][f"{key}_runs"] = values
            if None not in values:
                out[kind][key] = round(float(np.median(values)), 4)
    out["module_import_s_runs"] = [r["module_import_s"] for r in repeats]
    return out


def _median(values: list) -> float | None:
    """Over the seeds whose search reached MIT's score (`seeds_reaching_mit` says how many)."""
    import numpy as np

    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 1) if values else None


def _min(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return min(values) if values else None


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

"""Specialize a bundle for a device: the subnet with the best predicted accuracy under latency, MACs and params
limits, found without importing torch (predictor and latency table are NumPy); or, with no predictor, the subnet
with the best top-1 measured with the supernet itself on held-out images (`--score supernet`,
`ofakit.search.supernet_score`; the gradient search always scores so)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofakit.bundle import read_bundle_info
from ofakit.errors import ConfigError
from ofakit.predict.accuracy import AccuracyPredictor
from ofakit.rng import Stream
from ofakit.search.algorithms import ALGORITHMS
from ofakit.search.constraints import Limit, latency_limit, macs_limit, params_limit
from ofakit.search.evolution import EvolutionConfig, SearchResult
from ofakit.search.gradient import STEPS as GRADIENT_STEPS
from ofakit.search.pareto import pareto_front
from ofakit.search.rl import Reward
from ofakit.space import SearchSpace, get_space
from ofakit.space.genome import Genome


@dataclass(frozen=True)
class SpecializeConfig:
    device: str
    latency_ms: float | None = None
    macs: float | None = None
    params: float | None = None
    algorithm: str = "evolution"  # a name of ofakit.search.algorithms.ALGORITHMS
    budget: int | None = None  # archs scored (about population x generations; gradient: steps); None: 5000,
    # 300 scored with the supernet, 400 steps of the gradient search
    population: int = 100  # with the supernet's score: at most budget / 10 (at least 10)
    seed: int = 0
    latency_model: str = "lut"  # a name of ofakit.predict.estimators.ESTIMATORS
    drift: str = "off"  # auto | on | off: scale estimates by the machine's drift (ofakit.latency.drift.drift_for)
    latency_scale: float = 1.0  # multiplies every latency estimate, on top of the drift (1.0: none)
    reward: str = "hard"  # hard | mnas: how the limits enter the objective (mnas: the rl controller's soft form)
    latency_budgets: tuple[float, ...] = ()  # several latency limits (ms): one subnet each; latency_ms is then unused
    mnas_w: float = -0.07  # MnasNet's exponent w of the soft reward score x (latency / limit) ^ w
    score: str = "auto"  # predictor | supernet | auto: the bundle's predictor if it has one (gradient: supernet)
    data: str | None = None  # images whose `train` split the supernet's score and the gradient search use
    score_images: int = 1000  # train-split images each subnet's top-1 is measured on (--score supernet)
    score_calibration_images: int = 500  # train-split images for each subnet's BN statistics (--score supernet)
    progress: bool = False  # a progress bar on stderr while subnets are scored with the supernet


def specialize(bundle: str | Path, cfg: SpecializeConfig, *, pareto: bool = False,
               verify: str | None = None) -> tuple[SearchResult | list[SearchResult], dict[str, Any]]:
    """Run the search; returns the result and the JSON-ready report. With several `latency_budgets`: one result
    per budget (`ofakit.search.budgets`), and the report's "budgets" holds one entry each.

    Args:
        pareto: also report the front of predicted accuracy vs estimated latency (`pareto_report`) as "pareto".
        verify: a data source: also report the chosen subnet's measured top-1 and, where the device runs here, its
            measured latency (`ofakit.search.verify.verify_subnet`) as "verify" (imports torch).
    """
    from ofakit.predict.estimators import estimator_for
    from ofakit.latency.devices import get_device

    started = time.perf_counter()
    search = ALGORITHMS.get(cfg.algorithm)  # before any loading
    reward = Reward(cfg.reward, cfg.mnas_w)
    if cfg.budget is not None and cfg.budget < 1:
        raise ConfigError(f"--budget must be positive, got {cfg.budget}")
    if not 0 <= cfg.seed < 2**64:
        raise ConfigError(f"--seed must be 0 or more (below 2^64), got {cfg.seed}")
    budgets = cfg.latency_budgets or ((cfg.latency_ms,) if cfg.latency_ms is not None else ())
    if verify and len(budgets) > 1:
        raise ConfigError("--verify measures one subnet: give one latency budget")
    info = read_bundle_info(bundle)
    scored_by = _score_kind(bundle, cfg)
    budget = cfg.budget if cfg.budget is not None else (
        5000 if scored_by == "predictor" else GRADIENT_STEPS if ALGORITHMS.canonical(cfg.algorithm) == "gradient"
        else 300)
    device = get_device(cfg.device)
    space = get_space(info.space)
    predictor = AccuracyPredictor.load(bundle) if scored_by == "predictor" else None
    if predictor is not None and predictor.space != space.name:
        raise ConfigError(f"the predictor in {bundle} is for space {predictor.space!r}, the bundle for "
                          f"{space.name!r}; refit it with: ofakit predictor fit --bundle {bundle}")
    _check_device_serves(device.name, space.name, bundle)
    estimator = estimator_for(device.name, space.name, model=cfg.latency_model)
    drift = None
    if budgets:
        from ofakit.latency.drift import drift_for

        drift = drift_for(device.name, space.name, mode=cfg.drift, table_free=estimator.table is None)
    scale = cfg.latency_scale * (drift.scale if drift is not None else 1.0)
    search_space, notes = searchable_space(space, predictor, estimator, device.name)
    genome = Genome(search_space)
    others: list[Limit] = []
    if cfg.macs is not None:
        others.append(macs_limit(genome, cfg.macs))
    if cfg.params is not None:
        others.append(params_limit(genome, cfg.params))

    def limits_at(ms: float) -> list[Limit]:
        latency = latency_limit(f"latency_ms@{device.name}", ms, estimator, genome, scale)
        if ALGORITHMS.canonical(cfg.algorithm) == "gradient":  # it differentiates the table's sum
            from ofakit.search.gradient import with_table_form

            latency = with_table_form(latency, device.name, space.name, scale)
        return [latency, *others]

    limits = limits_at(budgets[0]) if budgets else others
    if not limits:
        raise ConfigError("give at least one limit: --latency, --macs or --params")
    population = cfg.population if predictor is not None else min(cfg.population, max(10, budget // 10))
    ecfg = sized_for_budget(ALGORITHMS.canonical(cfg.algorithm), budget, population)
    if predictor is not None:
        score = predictor.for_rows(genome)
    else:
        from ofakit.search.supernet_score import SupernetScoreConfig, supernet_score

        score = supernet_score(bundle, genome, str(cfg.data), SupernetScoreConfig(
            cfg.score_images, cfg.score_calibration_images), progress=cfg.progress,
            expected=budget * max(1, len(budgets)))
    rng = Stream(cfg.seed)
    setup_s = time.perf_counter() - started

    def subnet(result: SearchResult, limits: list[Limit]) -> dict[str, Any]:
        return {"arch": result.best.to_dict(), "predicted_accuracy": round(float(result.score), 6),
                "latency_ms": round(float(estimator.estimate(result.best, scale=scale)), 4),
                "macs": space.macs(result.best), "params": space.params(result.best),
                "limits": {lim.name: lim.maximum for lim in limits}}

    if len(budgets) > 1:
        from ofakit.search.budgets import search_budgets

        results, evaluations = search_budgets(genome, score, limits_at, budgets, search, ecfg, budget, cfg.seed,
                                              reward=reward)
        result, picked = results[budgets.index(max(budgets))], {"budgets": [
            {"latency_budget_ms": b, **subnet(r, limits_at(b))} for b, r in zip(budgets, results)]}
    else:
        result = search(genome, score, limits, ecfg, budget, rng, reward=reward)
        evaluations, picked = result.evaluations, subnet(result, limits)
    if hasattr(score, "close"):
        score.close()
    best = result.best
    report = {
        **picked,
        "latency_estimator": estimator.name,
        **({"latency_drift_scale": round(scale, 4)} if scale != 1.0 else {}),
        **({"latency_drift": drift.to_dict()} if drift is not None else {}),
        "device": device.name,
        "bundle": str(bundle),
        "space": space.name,
        **({"searched_resolutions": list(search_space.resolutions), "notes": notes} if notes else {}),
        "algorithm": ALGORITHMS.canonical(cfg.algorithm),
        **({"reward": {"kind": reward.kind, "mnas_w": reward.mnas_w}} if reward.kind != "hard" else {}),
        "score": score.describe() if hasattr(score, "describe") else {"kind": "predictor"},
        "seed": cfg.seed,
        "evaluations": evaluations,
        "setup_s": round(setup_s, 3),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    if pareto:  # over every arch scored (with several budgets: all feasible under the loosest)
        report["pareto"] = pareto_report(
            result, lambda genome, rows: estimator.estimate_rows(genome, rows, scale=scale))
    if verify:
        from ofakit.search.verify import verify_subnet

        report["verify"] = verify_subnet(bundle, best, verify, report)
    return (results if len(budgets) > 1 else result), report


MIN_POPULATION = 10  # the smallest population `sized_for_budget` shrinks evolution's to
SMALL_BUDGET_GENERATIONS = 10  # the generations a budget below 10 populations is spread over


def sized_for_budget(algorithm: str, budget: int, population: int) -> EvolutionConfig:
    """The population and generations that spend `budget` archs (`algorithm`: a canonical name).

    A population-based search scores `population` archs per generation after its first draws (evolution: the best
    half of `first_draws` = 2 populations; aging: one population). From 10 populations on, that is
    `budget // population` generations of `population` (OFA's 100, so the default budget of 5,000 scores ~5,200).
    Below, evolution and aging shrink the population (to at least MIN_POPULATION) so that the first draws and
    about SMALL_BUDGET_GENERATIONS generations fit in the budget, and evolution does not restart (a restart draws
    afresh, 2 more populations, and would have a generation or two left to climb): at most `budget` archs are
    scored. A budget too small for the first draws and one generation of the smallest population is a
    ConfigError. Other algorithms spend the budget their own way (random and rl: archs; gradient: steps).
    """
    cfg = EvolutionConfig(population=population, generations=max(1, budget // population))
    if algorithm not in ("evolution", "aging") or budget >= 10 * population:
        return cfg
    first = int(np.ceil(cfg.first_draws)) if algorithm == "evolution" else 1
    least = (first + 1) * MIN_POPULATION
    if budget < least:
        raise ConfigError(f"--budget {budget} is too small for --algorithm {algorithm}: its first population and one "
                          f"generation of {MIN_POPULATION} archs score {least}; give --budget {least} or more, or "
                          "--algorithm random (which scores exactly the budget)")
    small = max(MIN_POPULATION, budget // (first + SMALL_BUDGET_GENERATIONS))
    return EvolutionConfig(population=small, generations=max(1, budget // small - first), restart_after=0)


def searchable_space(space: SearchSpace, predictor: AccuracyPredictor | None, estimator: Any,
                     device: str) -> tuple[SearchSpace, list[str]]:
    """`space` restricted to the resolutions both the accuracy predictor encodes (MIT's encode a few) and the latency
    model estimates (a table has sections for a few), with a note that says so when it is restricted (none when it is
    not); a LatencyLookupError naming both sets when none is left."""
    from ofakit.errors import LatencyLookupError
    from ofakit.latency.table import how_to_profile
    from ofakit.predict.ofa_predictor import predictor_space, restrict_resolutions

    def listed(resolutions: Any) -> str:
        return ", ".join(map(str, resolutions))

    encoded = predictor_space(predictor, space).resolutions if predictor else space.resolutions  # (raises on none)
    timed = estimator.serves(space.resolutions)
    both = [r for r in encoded if r in set(timed)]
    model = f"the latency model ({estimator.name}) of {device}"
    if not both:
        missing = [r for r in encoded if r not in set(timed)]
        raise LatencyLookupError(
            f"no resolution of space {space.name!r} is both encoded by the accuracy predictor ({listed(encoded)}) "
            f"and estimated by {model} ({listed(timed) or 'none'}); to measure one, "
            f"{how_to_profile(device, space.name, f' --resolutions {missing[-1]}')}")
    if len(both) == len(space.resolutions):
        return space, []
    short = [tuple(encoded) != tuple(space.resolutions), tuple(timed) != tuple(space.resolutions)]
    why = (f"the accuracy predictor encodes {listed(encoded)} and {model} estimates {listed(timed)}" if all(short)
           else "the accuracy predictor encodes no others" if short[0] else f"{model} estimates no others")
    note = f"searched resolutions {listed(both)} only (of the space's {len(space.resolutions)}): {why}"
    return restrict_resolutions(space, both), [note]


def _score_kind(bundle: str | Path, cfg: SpecializeConfig) -> str:
    """"predictor" or "supernet": how subnets are scored; one line when a way is asked for that cannot be taken."""
    from ofakit.predict.accuracy import PREDICTOR_JSON

    if cfg.score not in ("auto", "predictor", "supernet"):
        raise ConfigError(f"unknown score {cfg.score!r}; known: predictor, supernet")
    kind = cfg.score
    if ALGORITHMS.canonical(cfg.algorithm) == "gradient":
        if kind == "predictor":
            raise ConfigError("--algorithm gradient descends on the supernet and scores its picks with it: drop "
                              "--score predictor")
        kind = "supernet"
    elif kind == "auto":
        if not (Path(bundle) / PREDICTOR_JSON).is_file():
            raise ConfigError(f"bundle {str(bundle)!r} has no accuracy predictor ({PREDICTOR_JSON}): fit one with "
                              f"`ofakit predictor fit --bundle {bundle} --data DATA --samples 500`, or score subnets "
                              "with the supernet itself: --score supernet --data DATA")
        kind = "predictor"
    if kind == "supernet" and not cfg.data:
        what = "--algorithm gradient" if ALGORITHMS.canonical(cfg.algorithm) == "gradient" else "--score supernet"
        raise ConfigError(f"{what} measures subnets on images: give --data DATA (its train split is used; e.g. the "
                          "bundle's calibration.npz, or what --verify takes)")
    return kind


def write_results(out: Path, report: dict[str, Any]) -> tuple[list[Path], list[Path]]:
    """arch.json (the chosen subnet; with several budgets arch-<budget>.json each, `arch_files`) and report.json in
    the folder `out`, and pareto.png where the report has a front; then the arch files and pareto.png of an earlier
    run that this one did not write are removed (only those names: no other file is touched), so that the folder
    agrees with report.json. Returns the paths written and the paths removed."""
    import json

    from ofakit.io import atomic_write_json, atomic_write_text
    from ofakit.search.budgets import arch_files, is_arch_file

    entries = report.get("budgets", [report])
    names = arch_files([e["latency_budget_ms"] for e in entries]) if "budgets" in report else ["arch.json"]
    written = []
    for name, entry in zip(names, entries):
        atomic_write_text(out / name, json.dumps(entry["arch"], indent=2) + "\n")
        written.append(out / name)
    atomic_write_json(out / "report.json", report)
    written.append(out / "report.json")
    if "pareto" in report:
        from ofakit.search.pareto import plot_fronts

        front = report["pareto"]
        written.append(plot_fronts(
            out / "pareto.png", {"specialized (predicted)": (front["latency_ms"],
                                                             [100 * a for a in front["predicted_accuracy"]])},
            xlabel=f"estimated latency on {report['device']} (ms)", ylabel="predicted top-1 (%)",
            title=f"{report['space']} on {report['device']}"))
    kept = {p.name for p in written}
    stale = sorted(p for p in out.iterdir() if p.name not in kept and (p.is_file() or p.is_symlink())
                   and (p.name in ("arch.json", "pareto.png") or is_arch_file(p.name)))
    for path in stale:  # after every new file is in place: a failure before leaves the old set whole
        path.unlink()
    return written, stale


def how_to_get_bundle(space: str) -> str:
    """Where a bundle of `space` comes from: a shipped one, MIT's pretrained files, or `ofakit train`."""
    from ofakit.bundles import bundles_for_space
    from ofakit.interop.ofa_checkpoint import MIT_SPACES

    shipped = bundles_for_space(space)
    if shipped:
        return f"shipped bundle(s) {', '.join(shipped)} (--bundle {shipped[0]})"
    if space in MIT_SPACES:
        return (f"import MIT's pretrained supernet and predictor: ofakit import-ofa --checkpoint CHECKPOINT "
                f"--predictor acc_predictor.pth --space {space} --out BUNDLE, then --bundle BUNDLE")
    return (f"no bundle ships; train one and fit its accuracy predictor: ofakit train --recipe RECIPE.yaml --set "
            f"space={space} --out RUN (see recipes/), then ofakit predictor fit --bundle RUN/bundle --data DATA, "
            "then --bundle RUN/bundle")


def _check_device_serves(device: str, space: str, bundle: str | Path) -> None:
    """When the device has tables, but none for the bundle's space, say what it serves and how to go on."""
    from ofakit.errors import LatencyLookupError
    from ofakit.latency.devices import devices
    from ofakit.latency.table import available_tables, how_to_profile

    tables = sorted(available_tables(device))
    if not tables or space in tables:
        return  # no table at all: estimator_for's error names the profile command
    from ofakit.predict.phones import has_table_free_model  # (imports the measuring code: only when needed)

    if has_table_free_model(device, space):
        return  # an op model or calibration
    serves = "; ".join(f"space {t}: {how_to_get_bundle(t)}" for t in tables)
    others = [name for name in devices().names() if space in available_tables(name)]
    alternatives = f"devices with a table for {space!r}: {', '.join(others)}; " if others else ""
    raise LatencyLookupError(
        f"device {device!r} has latency tables only for {', '.join(tables)}, but bundle {str(bundle)!r} is a "
        f"supernet of space {space!r}. {serves}. Or keep this bundle: {alternatives}to measure {device!r} for "
        f"{space!r}, {how_to_profile(device, space)}")


def pareto_report(result: SearchResult, latency: Any) -> dict[str, list]:
    """The front of predicted accuracy vs estimated latency over every feasible arch the search scored.

    `latency` maps (genome, rows) to milliseconds, e.g. `LutEstimator.estimate_rows`.
    """
    lat = np.asarray(latency(result.genome, result.rows), dtype=float)
    front = pareto_front(lat, result.scores)
    return {"latency_ms": lat[front].round(4).tolist(), "predicted_accuracy": result.scores[front].round(6).tolist(),
            "archs": [a.to_dict() for a in result.archs(front)]}

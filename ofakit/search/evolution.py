"""Evolutionary searches over a space, scored on whole batches (Cai et al., "Once-for-All" (evolution with
constraint-aware sampling); Real et al., "Regularized Evolution", AAAI 2019 (aging evolution)).

The score (a predicted accuracy) and every limit are called once per generation on the whole batch of new archs;
duplicates are removed through the hashable ArchConfig. A limit no subnet can meet is an `InfeasibleError` that
names the smallest value reached, never an endless loop.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.space import SearchSpace
from ofakit.search.constraints import InfeasibleError, Limit, feasible

ScoreFn = Callable[[Sequence[ArchConfig]], np.ndarray]


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 100  # archs kept per generation
    generations: int = 500
    parents: float = 0.25  # share of the population kept as parents
    mutation_share: float = 0.5  # share of children made by mutation (the rest by crossover)
    mutation_prob: float = 0.1  # per-field probability of a redraw in a mutation
    sample_tries: int = 200  # batches of random draws to find a feasible arch before giving up


@dataclass
class SearchResult:
    best: ArchConfig
    score: float
    costs: dict[str, float]
    evaluations: int  # distinct archs evaluated (limits checked; the feasible ones also scored)
    wall_time_s: float
    history: list[float] = field(default_factory=list)  # best score per generation
    archive: dict[ArchConfig, float] = field(default_factory=dict)  # every feasible arch scored -> score


class _Scorer:
    """Scores and checks batches, caching per arch."""

    def __init__(self, score: ScoreFn, limits: Sequence[Limit]) -> None:
        self.score, self.limits = score, limits
        self.cache: dict[ArchConfig, tuple[float, bool, dict[str, float]]] = {}

    def __call__(self, archs: Sequence[ArchConfig]) -> list[tuple[float, bool, dict[str, float]]]:
        new = list({a: None for a in archs if a not in self.cache})
        if new:
            mask, values = feasible(self.limits, new)
            scores = np.full(len(new), np.nan)  # only feasible archs are ever ranked, so only they are scored
            if mask.any():
                scores[mask] = np.asarray(self.score([a for a, ok in zip(new, mask) if ok]), dtype=np.float64)
            for i, arch in enumerate(new):
                self.cache[arch] = (float(scores[i]), bool(mask[i]), {k: float(v[i]) for k, v in values.items()})
        return [self.cache[a] for a in archs]

    @property
    def evaluations(self) -> int:
        return len(self.cache)

    def archive(self) -> dict[ArchConfig, float]:
        return {a: s for a, (s, ok, _) in self.cache.items() if ok}


def _infeasible(space: SearchSpace, limits: Sequence[Limit], scorer: _Scorer) -> InfeasibleError:
    smallest = space.smallest()
    _, values = feasible(limits, [smallest])
    seen = {name: min([c[2][name] for c in scorer.cache.values()] + [float(v[0])]) for name, v in values.items()}
    parts = [f"{lim.name} <= {_fmt(lim.maximum)}{lim.unit} (smallest reached: {_fmt(seen[lim.name])}{lim.unit})"
             for lim in limits if seen[lim.name] > lim.maximum]
    detail = "; ".join(parts) or ", ".join(f"{lim.name} <= {_fmt(lim.maximum)}" for lim in limits)
    return InfeasibleError(f"no subnet of space {space.name!r} meets the limits together: {detail}; "
                           "raise the limit")


def _fmt(value: float) -> str:
    return f"{value / 1e6:.2f}M" if abs(value) >= 1e6 else f"{value:.2f}"


def sample_feasible(space: SearchSpace, scorer: _Scorer, n: int, rng: random.Random, tries: int) -> list[ArchConfig]:
    """n distinct feasible archs by rejection sampling (batches of 4n draws); InfeasibleError if none is found."""
    found: dict[ArchConfig, None] = {}
    for _ in range(tries):
        batch = [space.sample(rng) for _ in range(4 * n)]
        for arch, (_, ok, _) in zip(batch, scorer(batch)):
            if ok:
                found[arch] = None
        if len(found) >= n:
            break
    if not found:
        _, ok, _ = scorer([space.smallest()])[0]
        if ok:
            return [space.smallest()]
        raise _infeasible(space, scorer.limits, scorer)
    return list(found)[:n]


def _result(scorer: _Scorer, started: float, history: list[float]) -> SearchResult:
    archive = scorer.archive()
    best = max(archive, key=lambda a: (archive[a], -hash(a)))
    return SearchResult(best, archive[best], scorer.cache[best][2], scorer.evaluations,
                        time.perf_counter() - started, history, archive)


def evolve(space: SearchSpace, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig,
           rng: random.Random) -> SearchResult:
    """OFA-style evolution: keep the best `parents`, refill with feasible mutants and crossovers."""
    started = time.perf_counter()
    scorer = _Scorer(score, limits)
    population = sample_feasible(space, scorer, cfg.population, rng, cfg.sample_tries)
    n_parents = max(2, int(cfg.parents * cfg.population))
    n_mutate = int(cfg.mutation_share * cfg.population)
    history = []
    for _ in range(cfg.generations):
        ranked = sorted(population, key=lambda a: scorer.cache[a][0], reverse=True)
        parents = ranked[:n_parents]
        history.append(scorer.cache[parents[0]][0])
        children: dict[ArchConfig, None] = dict.fromkeys(parents)
        for _ in range(cfg.sample_tries):
            want = cfg.population - len(children)
            if want <= 0:
                break
            n_mut = max(0, min(want, n_mutate - (len(children) - len(parents))))
            batch = [space.mutate(rng.choice(parents), rng, cfg.mutation_prob) for _ in range(n_mut)]
            batch += [space.crossover(rng.choice(parents), rng.choice(parents), rng) for _ in range(want - n_mut)]
            for arch, (_, ok, _) in zip(batch, scorer(batch)):
                if ok:
                    children[arch] = None
        population = list(children)[: cfg.population]
    return _result(scorer, started, history)


def aging_evolution(space: SearchSpace, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig,
                    rng: random.Random, sample_size: int = 25) -> SearchResult:
    """Regularized evolution: tournament of `sample_size`, mutate the winner, the oldest member dies.

    Children are made and scored a population-sized batch at a time (one tournament per child), which keeps the
    calls to the predictors vectorized; `generations` counts batches.
    """
    started = time.perf_counter()
    scorer = _Scorer(score, limits)
    queue = sample_feasible(space, scorer, cfg.population, rng, cfg.sample_tries)
    history = []
    for _ in range(cfg.generations):
        batch = []
        for _ in range(cfg.population):
            contenders = rng.sample(queue, min(sample_size, len(queue)))
            winner = max(contenders, key=lambda a: scorer.cache[a][0])
            batch.append(space.mutate(winner, rng, cfg.mutation_prob))
        for arch, (_, ok, _) in zip(batch, scorer(batch)):
            if ok:
                queue.append(arch)
                queue.pop(0)
        history.append(max(scorer.archive().values()))
    return _result(scorer, started, history)


def random_search(space: SearchSpace, score: ScoreFn, limits: Sequence[Limit], budget: int,
                  rng: random.Random) -> SearchResult:
    """The baseline: `budget` feasible random archs, the best one wins."""
    started = time.perf_counter()
    scorer = _Scorer(score, limits)
    scorer([space.sample(rng) for _ in range(budget)])
    if not scorer.archive():
        raise _infeasible(space, limits, scorer)
    return _result(scorer, started, [])

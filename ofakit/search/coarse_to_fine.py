"""Coarse-to-fine search (Yu et al., "BigNAS", ECCV 2020): score the coarse grid of uniform networks (the same
kernel, expand, depth and width everywhere, at every resolution: `SearchSpace.uniform_grid`), then refine the best
with mutations."""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ofakit.rng import Draws
from ofakit.search.constraints import Limit
from ofakit.search.evolution import EvolutionConfig, ScoreFn, SearchResult, _Evaluator, _infeasible, _result
from ofakit.space.genome import Genome


def coarse_to_fine(genome: Genome, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig,
                   rng: Draws, keep: int = 5) -> SearchResult:
    """Score the coarse grid, then spend `cfg.generations` batches of `cfg.population` mutations around the best
    `keep` feasible networks found so far."""
    started = time.perf_counter()
    ev = _Evaluator(genome, score, limits)
    ev.add_feasible(genome.encode(genome.space.uniform_grid()))
    if not ev.n:
        raise _infeasible(ev)
    history = []
    for _ in range(cfg.generations):
        elite = np.argsort(-ev.scores[: ev.n], kind="stable")[:keep]
        history.append(float(ev.scores[elite[0]]))
        ev.add_feasible(genome.mutate(ev.rows[elite[rng.integers(len(elite), size=cfg.population)]], rng,
                                      cfg.mutation_prob))
    return _result(ev, started, history)

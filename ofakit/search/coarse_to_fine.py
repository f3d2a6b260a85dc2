"""Coarse-to-fine search (Yu et al., "BigNAS", ECCV 2020): score a coarse grid of uniform networks (the same
kernel, expand, depth and width everywhere, at a few resolutions), then refine the best with mutations."""
from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.search.constraints import Limit
from ofakit.search.evolution import (EvolutionConfig, ScoreFn, SearchResult, _Evaluator, _infeasible, _result,
                                     numpy_engine_only)
from ofakit.space import SearchSpace
from ofakit.space.genome import Genome
from ofakit.space.mbconv import MBConvSpace


def coarse_grid(space: SearchSpace) -> list[ArchConfig]:
    """Every uniform network of the space (per resolution)."""
    grid = []
    if isinstance(space, MBConvSpace):
        s = space.spec
        for r, k, e, d in itertools.product(space.resolutions, s.kernel_choices, s.expand_choices, s.depth_choices):
            depths = tuple(d if d in ds else max(x for x in ds if x <= d) if min(ds) <= d else min(ds)
                           for ds in space.stage_depths)
            grid.append(ArchConfig(space.name, r, depths, (k,) * space.num_slots, (e,) * space.num_slots))
    else:
        s = space.spec
        for r, d, e, w in itertools.product(space.resolutions, s.depth_choices, s.expand_choices, s.width_choices):
            stem = max(space.stem_depths) if d == max(s.depth_choices) else min(space.stem_depths)
            grid.append(ArchConfig(space.name, r, (stem,) + (d,) * len(s.base_depths),
                                   expand_ratios=(e,) * space.num_slots, width_mults=(w,) * space.num_width_groups))
    return grid


def coarse_to_fine(genome: Genome, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig,
                   rng: np.random.Generator, keep: int = 5) -> SearchResult:
    """Score the coarse grid, then spend `cfg.generations` batches of `cfg.population` mutations around the best
    `keep` feasible networks found so far."""
    numpy_engine_only(cfg.engine, "coarse-to-fine")
    started = time.perf_counter()
    ev = _Evaluator(genome, score, limits)
    ev.add_feasible(genome.encode(coarse_grid(genome.space)))
    if not ev.n:
        raise _infeasible(ev)
    history = []
    for _ in range(cfg.generations):
        elite = np.argsort(-ev.scores[: ev.n], kind="stable")[:keep]
        history.append(float(ev.scores[elite[0]]))
        ev.add_feasible(genome.mutate(ev.rows[elite[rng.integers(len(elite), size=cfg.population)]], rng,
                                      cfg.mutation_prob))
    return _result(ev, started, history)

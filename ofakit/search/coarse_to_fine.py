"""Coarse-to-fine search (Yu et al., "BigNAS", ECCV 2020): score a coarse grid of uniform networks (the same
kernel, expand, depth and width everywhere, at a few resolutions), then refine the best with mutations."""
from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence

from ofakit.arch import ArchConfig
from ofakit.search.constraints import Limit
from ofakit.search.evolution import EvolutionConfig, ScoreFn, SearchResult, _infeasible, _result, _Scorer
from ofakit.space import SearchSpace
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


def coarse_to_fine(space: SearchSpace, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig,
                   rng: random.Random, keep: int = 5) -> SearchResult:
    """Score the coarse grid, then spend `cfg.generations` batches of `cfg.population` mutations around the best
    `keep` feasible networks found so far."""
    started = time.perf_counter()
    scorer = _Scorer(score, limits)
    grid = coarse_grid(space)
    scorer(grid)
    if not scorer.archive():
        raise _infeasible(space, limits, scorer)
    history = []
    for _ in range(cfg.generations):
        archive = scorer.archive()
        elite = sorted(archive, key=archive.get, reverse=True)[:keep]
        history.append(archive[elite[0]])
        scorer([space.mutate(rng.choice(elite), rng, cfg.mutation_prob) for _ in range(cfg.population)])
    return _result(scorer, started, history)

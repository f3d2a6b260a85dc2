"""The search algorithms `specialize` can run, by name: OFA's evolution (Cai et al., "Once-for-All", ICLR 2020),
aging evolution (Real et al., "Regularized Evolution", AAAI 2019), BigNAS's coarse-to-fine search (Yu et al., ECCV
2020) and the random baseline.

Each entry takes the genome, the score, the limits, the evolution settings (`cfg.generations` is the budget spent in
generations of `cfg.population`), the budget in archs, and the random generator. Imports NumPy only, so the CLI lists
the names without importing torch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ofakit.registry import Registry
from ofakit.search.coarse_to_fine import coarse_to_fine
from ofakit.search.constraints import Limit
from ofakit.search.evolution import EvolutionConfig, ScoreFn, SearchResult, aging_evolution, evolve, random_search
from ofakit.space.genome import Genome

Search = Callable[[Genome, ScoreFn, Sequence[Limit], EvolutionConfig, int, np.random.Generator], SearchResult]

ALGORITHMS: Registry[Search] = Registry("search algorithm")


def _generations(search: Callable[..., SearchResult]) -> Search:
    """An evolutionary search under the registry's signature: it spends the budget as `cfg.generations`."""
    return lambda genome, score, limits, cfg, budget, rng: search(genome, score, limits, cfg, rng)


def _archs(genome: Genome, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig, budget: int,
           rng: np.random.Generator) -> SearchResult:
    """Random search under the registry's signature: it spends the budget in archs."""
    return random_search(genome, score, limits, budget, rng)


ALGORITHMS.add("evolution", _generations(evolve))
ALGORITHMS.add("aging", _generations(aging_evolution))
ALGORITHMS.add("coarse-to-fine", _generations(coarse_to_fine))
ALGORITHMS.add("random", _archs)

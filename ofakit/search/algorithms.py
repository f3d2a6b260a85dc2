"""The search algorithms `specialize` can run, by name: OFA's evolution (Cai et al., "Once-for-All", ICLR 2020),
aging evolution (Real et al., "Regularized Evolution", AAAI 2019), BigNAS's coarse-to-fine search (Yu et al., ECCV
2020), a REINFORCE controller (`ofakit.search.rl`: NAS-RL, ENAS, MnasNet), the random baseline, and a differentiable
search on the supernet (`ofakit.search.gradient`: DARTS, FBNet, ProxylessNAS; its budget is descent steps).

Each entry takes the genome, the score, the limits, the evolution settings (`cfg.generations` is the budget spent in
generations of `cfg.population`; the controller's batch is `cfg.population`), the budget in archs, the random
generator, and the keyword `reward` (how the limits enter the objective: only the controller takes MnasNet's soft
form). Imports NumPy only, so the CLI lists the names without importing torch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ofakit.errors import ConfigError
from ofakit.registry import Registry
from ofakit.rng import Draws
from ofakit.search.coarse_to_fine import coarse_to_fine
from ofakit.search.constraints import Limit
from ofakit.search.evolution import EvolutionConfig, ScoreFn, SearchResult, aging_evolution, evolve, random_search
from ofakit.search.rl import Reward, reinforce
from ofakit.space.genome import Genome


class Search(Protocol):
    def __call__(self, genome: Genome, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig, budget: int,
                 rng: Draws, *, reward: Reward = ...) -> SearchResult: ...


ALGORITHMS: Registry[Search] = Registry("search algorithm")


def _hard_limits(name: str, search: Callable[..., SearchResult], *, archs: bool = False) -> Search:
    """A search that holds the limits as hard ones under the registry's signature: an evolutionary one spends the
    budget as `cfg.generations`, random search (`archs`) in archs."""

    def run(genome: Genome, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig, budget: int,
            rng: Draws, *, reward: Reward = Reward()) -> SearchResult:
        if reward.kind != "hard":
            raise ConfigError(f"search algorithm {name!r} holds the limits as hard ones; the {reward.kind!r} reward "
                              "is the RL controller's: use --algorithm rl")
        if archs:
            return search(genome, score, limits, budget, rng)
        return search(genome, score, limits, cfg, rng)

    return run


ALGORITHMS.add("evolution", _hard_limits("evolution", evolve))
ALGORITHMS.add("aging", _hard_limits("aging", aging_evolution))
ALGORITHMS.add("coarse-to-fine", _hard_limits("coarse-to-fine", coarse_to_fine))
ALGORITHMS.add("random", _hard_limits("random", random_search, archs=True))
ALGORITHMS.add("rl", reinforce)


def _gradient(genome: Genome, score: ScoreFn, limits: Sequence[Limit], budget: int,
              rng: Draws) -> SearchResult:
    """The differentiable search on the supernet (`ofakit.search.gradient`, imports torch): the budget is its
    descent steps."""
    from ofakit.search.gradient import gradient_search

    return gradient_search(genome, score, limits, rng, steps=budget)


ALGORITHMS.add("gradient", _hard_limits("gradient", _gradient, archs=True))

"""Searches find better feasible archs than random sampling, respect every limit, and never loop forever."""
from __future__ import annotations

import numpy as np
import pytest

from ofakit.errors import ConfigError
from ofakit.search.coarse_to_fine import coarse_to_fine
from ofakit.search.constraints import (InfeasibleError, Limit, arch_cost, macs_limit, params_limit, parse_count,
                                      parse_latency_ms)
from ofakit.search.evolution import EvolutionConfig, aging_evolution, evolve, random_search
from ofakit.search.pareto import pareto_front
from ofakit.space import SPACES, get_space
from ofakit.space.genome import Genome


def linear_score(genome, seed=0):
    """A score over rows that is a random linear function of the space's own features."""
    w = np.random.default_rng(seed).standard_normal(len(genome.space.feature_names))
    return arch_cost(genome, lambda archs: genome.space.encode(archs) @ w)


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("algorithm", ["evolution", "aging", "coarse-to-fine"])
def test_search_beats_random_under_a_macs_limit(algorithm):
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    score = linear_score(genome)
    limit = macs_limit(genome, 250e6)
    cfg = EvolutionConfig(population=50, generations=30)
    run = {"evolution": evolve, "aging": aging_evolution, "coarse-to-fine": coarse_to_fine}[algorithm]
    result = run(genome, score, [limit], cfg, rng())
    baseline = random_search(genome, score, [limit], result.evaluations, rng())
    assert space.macs(result.best) <= 250e6 and result.costs["macs"] == space.macs(result.best)
    assert result.score > baseline.score
    assert result.score == pytest.approx(float(score(genome.encode([result.best]))[0]))
    archs = result.archs()
    assert len(archs) == result.evaluations == len(set(archs))  # each distinct arch scored once
    assert all(space.macs(a) <= 250e6 for a in archs)
    again = run(genome, score, [limit], cfg, rng())
    assert again.best == result.best  # same seed, same result


@pytest.mark.parametrize("name", SPACES.names())
def test_every_space_searches(name):
    space = get_space(name)
    genome = Genome(space)
    limit = params_limit(genome, (space.params(space.smallest()) + space.params(space.largest())) / 2)
    result = evolve(genome, linear_score(genome), [limit], EvolutionConfig(population=20, generations=5), rng(1))
    space.validate(result.best)
    assert result.costs["params"] <= limit.maximum
    assert result.costs["params"] == space.params(result.best)
    assert result.best.resolution in space.resolutions


def test_several_limits_at_once():
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    limits = [macs_limit(genome, 300e6), params_limit(genome, 5e6)]
    result = evolve(genome, linear_score(genome, 2), limits, EvolutionConfig(population=30, generations=10), rng())
    assert space.macs(result.best) <= 300e6 and space.params(result.best) <= 5e6


def test_infeasible_limit_names_the_smallest_value():
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    smallest = space.macs(space.smallest())
    score = linear_score(genome)
    for run in (lambda lim: evolve(genome, score, lim, EvolutionConfig(generations=2), rng()),
                lambda lim: random_search(genome, score, lim, 50, rng()),
                lambda lim: coarse_to_fine(genome, score, lim, EvolutionConfig(generations=2), rng())):
        with pytest.raises(InfeasibleError, match=rf"macs <= 1\.00M \(smallest reached: {smallest / 1e6:.2f}M\)"):
            run([macs_limit(genome, 1e6)])


def test_infeasible_limit_prints_the_two_numbers_apart():
    """A limit just under the smallest value reached reads with as many decimals as it takes to differ."""
    space = get_space("tiny")
    genome = Genome(space)
    smallest = space.macs(space.smallest())
    limit = Limit("latency_ms", 0.2, arch_cost(genome, lambda archs: np.array([0.2004 + space.macs(a) - smallest
                                                                             for a in archs])), "ms")
    with pytest.raises(InfeasibleError, match=r"latency_ms <= 0\.2000ms \(smallest reached: 0\.2004ms\)"):
        random_search(genome, linear_score(genome), [limit], 20, rng())
    with pytest.raises(InfeasibleError, match=r"latency_ms <= 0\.10ms \(smallest reached: 0\.20ms\)"):
        random_search(genome, linear_score(genome), [Limit("latency_ms", 0.1, limit.cost, "ms")], 20, rng())


def test_just_feasible_limit_finds_the_smallest():
    space = get_space("tiny")
    genome = Genome(space)
    limit = Limit("macs", space.macs(space.smallest()),
                  arch_cost(genome, lambda archs: np.array([space.macs(x) for x in archs])))
    result = evolve(genome, linear_score(genome), [limit], EvolutionConfig(population=10, generations=3), rng())
    assert space.macs(result.best) == space.macs(space.smallest())


def test_coarse_grid_is_uniform_and_valid():
    for name in ("ofa-mbv3-w1.0", "ofa-resnet50", "proxyless-mobile"):
        space = get_space(name)
        grid = space.uniform_grid()
        assert len(set(grid)) == len(grid)
        for arch in grid[:50]:
            space.validate(arch)


def test_units():
    assert parse_latency_ms("30ms") == 30 and parse_latency_ms("30") == 30 and parse_latency_ms("0.03s") == 30
    assert parse_count("300M") == 300e6 and parse_count("1.2G") == 1.2e9 and parse_count("5000") == 5000
    with pytest.raises(Exception, match="cannot read latency '30 fps'"):
        parse_latency_ms("30 fps")
    with pytest.raises(Exception, match="cannot read MACs 'lots'"):
        parse_count("lots", "MACs")


def test_pareto_front():
    costs = [3, 1, 2, 2, 4]
    scores = [0.7, 0.5, 0.6, 0.65, 0.6]
    assert pareto_front(costs, scores).tolist() == [1, 3, 0]


def test_evolution_restarts_a_stalled_population():
    """A population whose best has not risen for `restart_after` generations starts again from fresh archs: more
    distinct archs are scored, the best so far never drops, and the same seed gives the same run."""
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    score, limit = linear_score(genome, 3), macs_limit(genome, 250e6)
    runs = {after: evolve(genome, score, [limit], EvolutionConfig(population=20, generations=40,
                                                                   restart_after=after), rng(2))
            for after in (0, 2)}
    restarted, plain = runs[2], runs[0]
    assert restarted.evaluations > plain.evaluations + 20  # at least one fresh population, mostly new archs
    assert np.all(np.diff(restarted.history) >= 0) and restarted.history[-1] <= restarted.score
    assert restarted.score == restarted.scores.max()
    again = evolve(genome, score, [limit], EvolutionConfig(population=20, generations=40, restart_after=2), rng(2))
    assert again.best == restarted.best and again.evaluations == restarted.evaluations


def test_evolution_starts_from_the_best_of_its_first_draws():
    """The first population is the best `population` of `first_draws` times as many random feasible archs: the
    first generation's best is the best of all those draws, and more draws start no lower (the same stream)."""
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    score, limit = linear_score(genome, 4), macs_limit(genome, 250e6)
    runs = {k: evolve(genome, score, [limit], EvolutionConfig(population=20, generations=3, restart_after=0,
                                                              first_draws=k), rng(5)) for k in (1.0, 3.0)}
    assert runs[3.0].history[0] == pytest.approx(runs[3.0].scores[:60].max())
    assert runs[1.0].history[0] == pytest.approx(runs[1.0].scores[:20].max())
    assert runs[3.0].history[0] >= runs[1.0].history[0]  # the first 20 draws are the same rows in both
    with pytest.raises(ConfigError, match=r"first_draws \(0.5\) at least 1"):
        evolve(genome, score, [limit], EvolutionConfig(population=20, generations=3, first_draws=0.5), rng(5))

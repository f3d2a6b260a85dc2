"""The algorithm registry: every algorithm runs under the one signature and meets the limits; unknown names are one
UnknownNameError with the known names and the close match; listing the names imports no torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ofakit.errors import UnknownNameError
from ofakit.search.algorithms import ALGORITHMS
from ofakit.search.constraints import arch_cost, macs_limit
from ofakit.search.evolution import EvolutionConfig
from ofakit.space import get_space
from ofakit.space.genome import Genome


def test_the_algorithms_are_registered():
    assert ALGORITHMS.names() == ["aging", "coarse-to-fine", "evolution", "gradient", "random", "rl"]


@pytest.mark.parametrize("name", [n for n in ALGORITHMS.names() if n != "gradient"])  # gradient: test_gradient.py
def test_every_algorithm_meets_the_limit_and_is_reproducible(name):
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    w = np.random.default_rng(0).standard_normal(len(space.feature_names))
    score = arch_cost(genome, lambda archs: space.encode(archs) @ w)
    limit = macs_limit(genome, 250e6)
    cfg = EvolutionConfig(population=20, generations=5)
    result = ALGORITHMS.get(name)(genome, score, [limit], cfg, 100, np.random.default_rng(0))
    assert space.macs(result.best) <= 250e6 and result.evaluations > 0
    assert all(space.macs(a) <= 250e6 for a in result.archs())
    assert result.score == pytest.approx(float(score(genome.encode([result.best]))[0]))
    again = ALGORITHMS.get(name)(genome, score, [limit], cfg, 100, np.random.default_rng(0))
    assert again.best == result.best


def test_random_spends_the_budget_in_archs():
    space = get_space("tiny")
    genome = Genome(space)
    score = arch_cost(genome, lambda archs: np.array([space.macs(a) for a in archs], dtype=float))
    limit = macs_limit(genome, space.macs(space.largest()))
    result = ALGORITHMS.get("random")(genome, score, [limit], EvolutionConfig(), 7, np.random.default_rng(0))
    assert result.evaluations <= 7 and len(result.archs()) == result.evaluations


@pytest.mark.parametrize("given, close", [("evolutoin", "evolution"), ("agin", "aging"), ("coarse_to_fine",
                                                                                          "coarse-to-fine")])
def test_unknown_names_name_the_close_match(given, close):
    known = ", ".join(ALGORITHMS.names())
    with pytest.raises(UnknownNameError, match=rf"unknown search algorithm '{given}'; known: {known}\. Did you mean "
                                               rf"'{close}'\?"):
        ALGORITHMS.get(given)


def test_listing_the_algorithms_imports_no_torch():
    code = ("import sys; from ofakit.search.algorithms import ALGORITHMS; ALGORITHMS.names(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

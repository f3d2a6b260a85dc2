"""The compiled engine (ofakit.search.fused) gives exactly what the NumPy loop gives, and says why it cannot run."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ofakit.errors import ConfigError
from ofakit.predict.estimators import estimator_for
from ofakit.search import fused
from ofakit.search.constraints import Limit, arch_cost, latency_limit, macs_limit, params_limit
from ofakit.search.evolution import EvolutionConfig, evolve
from ofakit.space import get_space
from ofakit.space.genome import Genome

REPO = Path(__file__).resolve().parents[2]
needs_numba = pytest.mark.skipif(not fused.numba_available(),
                                 reason="Numba is not installed (pip install 'ofakit[fast]')")


def mlp_score(genome, seed=0):
    """A random two-layer float32 network on the rows' one-hot choices (the shape of OFA's accuracy predictor)."""
    g = np.random.default_rng(seed)
    w1 = g.standard_normal((int(genome.sizes.sum()), 64)).astype(np.float32)
    w2 = g.standard_normal((64, 1)).astype(np.float32)
    return lambda rows: (np.maximum(genome.onehot(rows) @ w1, 0) @ w2)[:, 0].astype(np.float64)


def search(engine, limits_of, seed, space="ofa-mbv3-w1.2", **cfg):
    genome = Genome(get_space(space))
    cfg = EvolutionConfig(**{"population": 40, "generations": 60, **cfg}, engine=engine)
    return evolve(genome, mlp_score(genome), limits_of(genome), cfg, np.random.default_rng(seed))


def lut_macs_params(genome):
    est = estimator_for("note10", "ofa-mbv3-w1.2", model="lut")
    return [latency_limit("latency_ms@note10", 22.0, est, genome), macs_limit(genome, 330e6),
            params_limit(genome, 7.5e6)]


@needs_numba
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numba_engine_gives_the_numpy_result(seed):
    a, b = search("numpy", lut_macs_params, seed), search("numba", lut_macs_params, seed)
    assert a.best == b.best and a.score == b.score and a.evaluations == b.evaluations
    assert a.history == b.history
    np.testing.assert_array_equal(a.rows, b.rows)  # the same archs, found in the same order
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.costs == b.costs
    est = estimator_for("note10", "ofa-mbv3-w1.2", model="lut")
    assert b.costs["latency_ms@note10"] == pytest.approx(est.estimate(b.best), rel=1e-12)
    assert b.costs["latency_ms@note10"] <= 22.0 and b.costs["macs"] <= 330e6 and b.costs["params"] <= 7.5e6
    assert len(set(b.archs())) == b.evaluations


@needs_numba
def test_numba_engine_grows_its_store_and_matches_in_a_long_run():
    # population 20 and 500 generations: more archs than the first store holds (4,096), so it grows mid-run
    a = search("numpy", lambda g: [macs_limit(g, 400e6)], 5, space="ofa-mbv3-w1.0", population=20,
               generations=500, mutation_prob=0.3)
    b = search("numba", lambda g: [macs_limit(g, 400e6)], 5, space="ofa-mbv3-w1.0", population=20,
               generations=500, mutation_prob=0.3)
    assert b.evaluations > 4096
    assert a.best == b.best and a.evaluations == b.evaluations and a.history == b.history


@needs_numba
def test_numba_engine_refuses_a_limit_that_is_not_a_layer_sum():
    def limits(genome):
        return [Limit("latency_ms@somewhere", 10.0, arch_cost(genome, lambda archs: np.ones(len(archs))))]

    with pytest.raises(ConfigError, match="latency_ms@somewhere.*not a sum over layers.*engine 'numpy'"):
        search("numba", limits, 0)
    assert search("numpy", limits, 0, generations=2).evaluations > 0


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown search engine 'cuda'; choices: numpy, numba"):
        search("cuda", lambda g: [macs_limit(g, 400e6)], 0)


def test_without_numba_the_engine_names_the_install_and_numpy_runs():
    # a fresh interpreter where `import numba` fails: the module still imports, and only engine "numba" is refused
    code = textwrap.dedent("""
        import sys
        sys.modules["numba"] = None  # import numba -> ImportError
        import numpy as np
        from ofakit.errors import ConfigError
        from ofakit.search.constraints import macs_limit
        from ofakit.search.evolution import EvolutionConfig, evolve
        from ofakit.space import get_space
        from ofakit.space.genome import Genome
        genome = Genome(get_space("ofa-mbv3-w1.0"))
        score = lambda rows: rows.sum(axis=1).astype(float)
        limits = [macs_limit(genome, 400e6)]
        evolve(genome, score, limits, EvolutionConfig(population=20, generations=3), np.random.default_rng(0))
        try:
            evolve(genome, score, limits, EvolutionConfig(generations=3, engine="numba"), np.random.default_rng(0))
        except ConfigError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "Numba is not installed (pip install 'ofakit[fast]')" in proc.stdout and "engine 'numpy'" in proc.stdout


def test_pairwise_sum_follows_numpys_order():
    # the kernel's limit values must equal NumPy's to the last bit, or a latency at the limit could split the engines
    g = np.random.default_rng(0)
    for n in (3, 8, 13, 20, 24, 37):
        a = g.standard_normal(n) * 10.0 ** g.integers(-3, 4, size=n)
        assert fused._pairwise_sum(a) == np.add.reduce(a) == a[None, :].sum(axis=1)[0]


def test_shares_outside_their_range_are_a_clear_error():
    with pytest.raises(ConfigError, match=r"parents \(1.5\) must be in \(0, 1\]"):
        search("numpy", lambda g: [macs_limit(g, 400e6)], 0, parents=1.5)


@pytest.mark.parametrize("algorithm", ["aging", "coarse-to-fine"])
def test_algorithms_without_a_compiled_engine_refuse_it(algorithm):
    from ofakit.search.coarse_to_fine import coarse_to_fine
    from ofakit.search.evolution import aging_evolution

    run = {"aging": aging_evolution, "coarse-to-fine": coarse_to_fine}[algorithm]
    genome = Genome(get_space("ofa-mbv3-w1.0"))
    with pytest.raises(ConfigError, match=f"engine 'numba' runs the evolution algorithm only, not '{algorithm}'"):
        run(genome, mlp_score(genome), [macs_limit(genome, 400e6)], EvolutionConfig(generations=2, engine="numba"),
            np.random.default_rng(0))

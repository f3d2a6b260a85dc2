import numpy as np
import pytest

from ofakit.rng import Stream


def test_the_draws_are_splitmix64_of_the_seeds_weyl_sequence():
    """Seed 0 starts at state 0 (the seed's hash of 0 is 0), so the first draws are SplitMix64's published outputs
    for state 0."""
    assert Stream(0).bits(3).tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_same_seed_same_draws_and_calls_continue_the_stream():
    a, b = Stream(7), Stream(7)
    assert np.array_equal(a.random((4, 3)), b.random((4, 3)))
    whole = Stream(3).random(10)
    parts = Stream(3)
    assert np.array_equal(np.concatenate([parts.random(4), parts.random((2, 3)).ravel()]), whole)
    assert not np.array_equal(Stream(1).random(8), Stream(2).random(8))


def test_floats_are_uniform_in_the_unit_interval():
    u = Stream(11).random(200_000)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    chi2 = float(((counts - 10_000) ** 2 / 10_000).sum())
    assert chi2 < 50  # 19 degrees of freedom: p ~ 1e-4
    assert isinstance(Stream(0).random(), float)
    assert Stream(0).random([2, 3]).shape == (2, 3) and Stream(0).random(0).shape == (0,)


def test_integers_cover_their_range_uniformly():
    s = Stream(5)
    draws = s.integers(7, size=70_000)
    assert draws.dtype == np.int64 and draws.min() == 0 and draws.max() == 6
    chi2 = float(((np.bincount(draws) - 10_000) ** 2 / 10_000).sum())
    assert chi2 < 30  # 6 degrees of freedom
    shifted = s.integers(-3, 2, size=(50, 4))
    assert shifted.shape == (50, 4) and set(np.unique(shifted).tolist()) == {-3, -2, -1, 0, 1}
    one = s.integers(2**31)
    assert isinstance(one, int) and 0 <= one < 2**31


@pytest.mark.parametrize("call, message", [
    (lambda: Stream(-1), r"\[0, 2\^64\), got -1"),
    (lambda: Stream(0).integers(0), r"high \(0\) must be above low \(0\)"),
    (lambda: Stream(0).integers(5, 2), r"high \(2\) must be above low \(5\)"),
    (lambda: Stream(0).integers(2**60), "more than this stream draws exactly"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_search_functions_take_either_kind_of_generator():
    """A Stream and NumPy's Generator both serve a search (each draws only floats and bounded integers)."""
    from ofakit.search.evolution import EvolutionConfig, evolve
    from ofakit.search.constraints import macs_limit
    from ofakit.space import get_space
    from ofakit.space.genome import Genome

    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    score = lambda rows: rows.sum(axis=1).astype(float)  # noqa: E731
    limits = [macs_limit(genome, 250e6)]
    cfg = EvolutionConfig(population=20, generations=5)
    for rng in (Stream(0), np.random.default_rng(0)):
        result = evolve(genome, score, limits, cfg, rng)
        assert space.macs(result.best) <= 250e6
    again = evolve(genome, score, limits, cfg, Stream(0))
    assert again.best == evolve(genome, score, limits, cfg, Stream(0)).best

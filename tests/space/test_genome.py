"""Genome rows stand for archs exactly: round trips, de-duplication keys, vectorized costs and feature maps."""
from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from ofakit.search.constraints import macs_limit, params_limit
from ofakit.space import SPACES, get_space
from ofakit.space.additive import BlockSum
from ofakit.space.genome import Genome
from ofakit.space.mbconv import MBConvSpace


def sampled(space, n=300, seed=0):
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)] + [space.smallest(), space.largest()]


@pytest.mark.parametrize("name", SPACES.names())
def test_rows_round_trip_and_keys_follow_the_space_key(name):
    space = get_space(name)
    genome = Genome(space)
    archs = sampled(space)
    rows = genome.encode(archs)
    assert rows.shape == (len(archs), genome.width) and (rows >= 0).all() and (rows < genome.sizes).all()
    back = genome.decode(rows)
    assert back == archs
    assert [a.to_dict() for a in back] == [a.to_dict() for a in archs]  # skipped slots keep their values too
    keys = genome.keys(rows).tolist()
    for i in range(0, len(archs) - 1):
        assert (keys[i] == keys[i + 1]) == (space.key(archs[i]) == space.key(archs[i + 1]))
    assert len(set(keys)) == len({space.key(a) for a in archs})


@pytest.mark.parametrize("name", SPACES.names())
def test_inactive_genes_do_not_change_the_key(name):
    space = get_space(name)
    genome = Genome(space)
    rows = genome.sample(200, np.random.default_rng(0))
    active = genome.active(rows)
    if active.all():
        pytest.skip(f"space {name} has no gated genes")
    changed = np.where(active, rows, (rows + 1) % genome.sizes)  # only the skipped slots move
    assert (genome.keys(changed) == genome.keys(rows)).all()
    assert [space.key(a) for a in genome.decode(changed)] == [space.key(a) for a in genome.decode(rows)]
    bumped = rows.copy()
    r, c = np.argwhere(active & (genome.sizes > 1))[0]
    bumped[r, c] = (bumped[r, c] + 1) % genome.sizes[c]
    assert genome.keys(bumped)[r] != genome.keys(rows)[r]


def test_mutation_and_crossover():
    genome = Genome(get_space("ofa-mbv3-w1.0"))
    rng = np.random.default_rng(0)
    a, b = genome.sample(500, rng), genome.sample(500, rng)
    assert (genome.mutate(a, rng, 0.0) == a).all()
    moved = genome.mutate(a, rng, 1.0)
    assert (moved != a).mean() > 0.3 and (moved < genome.sizes).all()
    child = genome.crossover(a, b, rng)
    assert ((child == a) | (child == b)).all()
    assert 0.4 < ((child == a) & (a != b)).sum() / (a != b).sum() < 0.6


@pytest.mark.parametrize("name", SPACES.names())
def test_linear_map_reproduces_the_space_encoding(name):
    space = get_space(name)
    genome = Genome(space)
    mapping = genome.linear_map(space.encode)
    assert mapping is not None
    rows = genome.encode(sampled(space, 100, seed=3))
    np.testing.assert_allclose(genome.onehot(rows) @ mapping, space.encode(genome.decode(rows)), atol=1e-6)


def test_linear_map_refuses_a_nonlinear_encoding():
    space = get_space("tiny")
    genome = Genome(space)
    assert genome.linear_map(lambda archs: space.encode(archs) ** 2 @ np.ones((len(space.feature_names), 1))
                             * np.array([[a.resolution for a in archs]]).T) is None


@pytest.mark.parametrize("name", [n for n in SPACES.names() if isinstance(get_space(n), MBConvSpace)])
def test_block_sums_equal_macs_and_params(name):
    space = get_space(name)
    genome = Genome(space)
    archs = sampled(space, 100)
    rows = genome.encode(archs)
    macs = np.array([space.macs(a) for a in archs], dtype=float)
    params = np.array([space.params(a) for a in archs], dtype=float)
    np.testing.assert_array_equal(macs_limit(genome, 0).cost(rows), macs)
    np.testing.assert_array_equal(params_limit(genome, 0).cost(rows), params)
    total = BlockSum(space, lambda _, layer: float(space.layer_costs(layer)[0]))
    np.testing.assert_array_equal(total.of_archs(archs), macs)


@pytest.mark.parametrize("name", SPACES.names())
def test_active_masks_from_the_code_table_equal_the_comparisons(name):
    genome = Genome(get_space(name))
    rows = genome.sample(500, np.random.default_rng(1))
    np.testing.assert_array_equal(genome.active(rows), genome._active_slow(rows))
    assert genome.gate_code is not None or not genome._gated.size  # every shipped space has the table


def test_mutation_redraws_about_prob_of_the_genes_and_keeps_the_others():
    genome = Genome(get_space("ofa-mbv3-w1.0"))
    rows = genome.sample(2000, np.random.default_rng(0))
    moved = genome.mutate(rows, np.random.default_rng(1), 0.1)
    changed = (moved != rows).mean()  # a redraw keeps the value with probability 1 / choices
    expected = 0.1 * float(np.mean(1 - 1 / genome.sizes))
    assert abs(changed - expected) < 0.01 and (moved < genome.sizes).all() and (moved >= 0).all()


@pytest.mark.parametrize("name", SPACES.names())
def test_spanning_rows_span_the_one_hot_codes_of_random_rows(name):
    genome = Genome(get_space(name))
    span = genome.spanning_rows()
    assert len(span) == 1 + int((genome.sizes - 1).sum()) and genome.active(span[:1]).all()
    basis = genome.onehot(span).astype(np.float64)
    rows = genome.onehot(genome.sample(500, np.random.default_rng(2))).astype(np.float64)
    rank = np.linalg.matrix_rank(basis)
    assert rank == np.linalg.matrix_rank(np.vstack([basis, rows]))  # random rows add no direction
    assert rank == np.linalg.matrix_rank(rows)  # and the span holds no direction they lack (same minimum-norm map)


def test_a_map_on_the_spanning_rows_equals_one_on_random_rows():
    """The minimum-norm least-squares map is the same whichever rows span the codes (what a search's predictor
    scores with, so the same seed picks the same archs)."""
    space = get_space("ofa-mbv3-w1.2")
    genome = Genome(space)
    fit = genome.sample(4 * int(genome.sizes.sum()) + 64, np.random.default_rng(0))
    on_random = np.linalg.lstsq(genome.onehot(fit).astype(np.float64), space.encode(genome.decode(fit)),
                                rcond=None)[0]
    np.testing.assert_allclose(genome.linear_map(space.encode), on_random, atol=1e-12)


def test_rows_and_their_maps_import_no_masked_arrays():
    """numpy.ma (pulled in by np.unique) costs ~15 ms of a fresh process; a specialize call needs none of it."""
    code = ("import sys; import numpy as np; from ofakit.space import get_space; "
            "from ofakit.space.genome import Genome; space = get_space('ofa-mbv3-w1.2'); genome = Genome(space); "
            "rows = genome.sample(10, np.random.default_rng(0)); genome.linear_map(space.encode); "
            "genome.decode(rows); genome.keys(rows); "
            "assert 'numpy.ma' not in sys.modules, 'numpy.ma imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

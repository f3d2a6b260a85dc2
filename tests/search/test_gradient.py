"""The differentiable search on the tiny space, a small supernet and generated images: the same seed gives the same
result, the result meets the limits (checked with the limit's own cost), a tighter limit gives a cheaper subnet, and
what it cannot do is one clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ofakit.bundle import save_bundle  # noqa: E402
from ofakit.cli.main import main  # noqa: E402
from ofakit.errors import ConfigError  # noqa: E402
from ofakit.search.algorithms import ALGORITHMS  # noqa: E402
from ofakit.search.constraints import InfeasibleError, arch_cost, macs_limit, params_limit  # noqa: E402
from ofakit.search.gradient import GradientConfig, gradient_search  # noqa: E402
from ofakit.search.supernet_score import SupernetScore, SupernetScoreConfig  # noqa: E402
from ofakit.space.genome import Genome  # noqa: E402
from ofakit.supernet import build_supernet  # noqa: E402
from tests.search.test_supernet_score import images, write_data  # noqa: E402

CFG = GradientConfig(batch_size=16, candidates=2, resolutions=2)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = build_supernet("tiny", num_classes=10).eval()
    genome = Genome(net.space)
    score = SupernetScore(net, genome, images(400), SupernetScoreConfig(images=64, calibration_images=64))
    return net, genome, score


def search(setup, limits, seed=0, steps=8, cfg=CFG):
    _, genome, score = setup
    return gradient_search(genome, score, limits, np.random.default_rng(seed), cfg, steps=steps)


def middle_macs(space) -> float:
    return float(np.mean([space.macs(space.smallest()), space.macs(space.largest())]))


def test_the_same_seed_gives_the_same_result_and_it_meets_the_limits(setup):
    net, genome, score = setup
    space = net.space
    limits = [macs_limit(genome, middle_macs(space)), params_limit(genome, space.params(space.largest()) * 0.9)]
    first, again = search(setup, limits), search(setup, limits)
    assert first.best == again.best and first.rows.tolist() == again.rows.tolist() and first.history == again.history
    assert space.macs(first.best) <= limits[0].maximum and space.params(first.best) <= limits[1].maximum
    assert first.costs == {"macs": space.macs(first.best), "params": space.params(first.best)}
    # the pick is the best finalist on the whole split, where it scores as the scorer scores it there
    assert first.score == pytest.approx(max(first.scores)) and len(first.scores) <= CFG.finalists
    assert first.score == score.on_whole_split(genome.encode([first.best]))[0]
    assert score.describe()["final_choice"]["images"] == len(score.split) > score.describe()["images"]
    # each candidate and its grown copy
    assert 1 <= first.evaluations <= 2 * (CFG.candidates + CFG.samples) * CFG.resolutions and len(first.history) == 8
    assert all(h > 0 for h in first.history)


def test_a_tighter_limit_gives_a_smaller_expected_cost(setup):
    """`history`: E[MACs] / limit per step; the penalty pulls the expected cost toward each limit, from above
    or below."""
    net, genome, _ = setup
    space = net.space
    low, high = space.macs(space.smallest()), space.macs(space.largest())
    tight_limit = low + 0.15 * (high - low)
    one = GradientConfig(batch_size=16, candidates=1, samples=0, resolutions=1, learning_rate=0.5)  # one resolution
    loose_limit = low + 0.8 * (high - low)
    loose = search(setup, [macs_limit(genome, loose_limit)], steps=16, cfg=one)
    tight = search(setup, [macs_limit(genome, tight_limit)], steps=16, cfg=one)
    end = slice(-4, None)
    assert np.mean(tight.history[end]) * tight_limit < 0.8 * np.mean(loose.history[end]) * loose_limit
    assert space.macs(tight.best) <= tight_limit


def test_fill_grows_a_subnet_into_the_room_the_limit_leaves(setup):
    """The grown subnet meets the limits, costs more, and no change of one gene that raises its cost still fits;
    the logits' favourite among the changes that fit is the one taken."""
    from ofakit.search.evolution import _Evaluator
    from ofakit.search.gradient import _Layout, _changes, _fill

    net, genome, _ = setup
    space = net.space
    limits = [macs_limit(genome, middle_macs(space))]
    row = genome.encode([space.smallest()])
    layout = _Layout(genome, limits, int(row[0, genome.columns["resolution"][0]]))
    logits = [np.random.default_rng(i).normal(size=shape) for i, shape in
              enumerate([(space.num_slots, layout.shape[1]), (space.num_slots, layout.shape[2]),
                         (len(layout.depth_sizes), layout.shape[3])])]
    ev = _Evaluator(genome, None, limits)
    grown = _fill(genome, ev, row, logits, layout)
    cost = limits[0].cost
    assert cost(row)[0] < cost(grown)[0] <= limits[0].maximum
    options, _ = _changes(genome, grown, logits, layout)
    assert not ((cost(options) > cost(grown)[0]) & (cost(options) <= limits[0].maximum)).any()
    options, lost = _changes(genome, row, logits, layout)
    fits = (cost(options) > cost(row)[0]) & (cost(options) <= limits[0].maximum)
    first = options[int(np.argmin(np.where(fits, lost, np.inf)))]
    assert (_fill(genome, ev, row, logits, layout, most=1) == first).all()


def test_the_limit_steers_the_descent(setup):
    """With a limit barely above the smallest subnet the penalty must grow until the argmax fits; every subnet the
    search ends with fits."""
    net, genome, _ = setup
    space = net.space
    limit = macs_limit(genome, space.macs(space.smallest()) * 1.05)
    result = search(setup, [limit])
    assert all(space.macs(a) <= limit.maximum for a in result.archs())


def test_what_it_cannot_do_is_one_clear_error(setup):
    net, genome, score = setup
    space = net.space
    limit = macs_limit(genome, middle_macs(space))
    with pytest.raises(ConfigError, match="descends on the supernet: it needs --data DATA"):
        gradient_search(genome, lambda rows: np.zeros(len(rows)), [limit], np.random.default_rng(0))
    flat = arch_cost(genome, lambda archs: np.array([space.macs(a) for a in archs], dtype=float))
    from ofakit.search.constraints import Limit

    with pytest.raises(ConfigError, match="needs a limit with an additive cost"):
        gradient_search(genome, score, [Limit("macs", 1e9, flat)], np.random.default_rng(0))
    with pytest.raises(InfeasibleError, match="smallest reached"):
        search(setup, [macs_limit(genome, space.macs(space.smallest()) * 0.5)])
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        GradientConfig(batch_size=0)
    with pytest.raises(ConfigError, match="rl controller's|RL controller's"):
        from ofakit.search.rl import Reward

        ALGORITHMS.get("gradient")(genome, score, [limit], None, 6, np.random.default_rng(0), reward=Reward("mnas"))


def test_specialize_runs_it_with_data_and_no_predictor(tmp_path, capsys):
    torch.manual_seed(0)
    save_bundle(tmp_path / "b", build_supernet("ofa-mbv3-cifar"))
    data = write_data(tmp_path / "d.npz", n_train=40)
    argv = ["specialize", "--device", "cpu-ort", "--latency", "0.8ms", "--no-drift", "--latency-model", "lut",
            "--bundle", str(tmp_path / "b"), "--algorithm", "gradient", "--data", str(data), "--budget", "3",
            "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["algorithm"] == "gradient" and report["score"]["kind"] == "supernet"
    assert report["latency_ms"] <= 0.8 and 1 <= report["evaluations"] <= 2 * 27
    final = report["score"]["final_choice"]
    assert final["images"] == 40 and 1 <= final["subnets_scored"] <= min(GradientConfig().finalists,
                                                                          report["evaluations"])


def test_gradient_refuses_the_predictor_score(tmp_path, capsys):
    save_bundle(tmp_path / "b", build_supernet("ofa-mbv3-cifar"))
    assert main(["specialize", "--device", "cpu-ort", "--latency", "0.8ms", "--bundle", str(tmp_path / "b"),
                 "--algorithm", "gradient", "--score", "predictor", "--data", "x.npz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drop --score predictor" in err


def test_a_learned_latency_model_gets_the_tables_sum_to_differentiate():
    from ofakit.latency.estimate import LutEstimator
    from ofakit.latency.table import find_table
    from ofakit.predict.estimators import estimator_for
    from ofakit.search.constraints import latency_limit
    from ofakit.search.gradient import with_table_form
    from ofakit.space import get_space

    genome = Genome(get_space("ofa-mbv3-cifar"))
    learned = latency_limit("latency_ms@cpu-ort", 0.6, estimator_for("cpu-ort", "ofa-mbv3-cifar", model="predictor"),
                            genome, 1.1)
    assert learned.additive is None
    given = with_table_form(learned, "cpu-ort", "ofa-mbv3-cifar", 1.1)
    rows = genome.sample(20, np.random.default_rng(0))
    form = given.additive
    lut = LutEstimator(find_table("cpu-ort", "ofa-mbv3-cifar"))
    np.testing.assert_allclose(form.scale * (form.block_sum.of_rows(genome, rows) + form.offset),
                               lut.estimate_rows(genome, rows, scale=1.1))
    assert given.cost is learned.cost and given.maximum == 0.6  # the checks stay the learned model's
    assert with_table_form(given, "cpu-ort", "ofa-mbv3-cifar") is given
    assert with_table_form(learned, "note10", "ofa-mbv3-cifar") is learned  # no table of the space: unchanged

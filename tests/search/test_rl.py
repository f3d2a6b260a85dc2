"""The REINFORCE controller: reproducible, never picks an infeasible arch, learns where the reward is, the soft
(MnasNet) reward trades score for cost, an infeasible limit is the shared one-line error."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ofakit.cli.main import main
from ofakit.errors import ConfigError
from ofakit.search.constraints import InfeasibleError, macs_limit
from ofakit.search.evolution import EvolutionConfig
from ofakit.search.rl import Controller, Reward, RLConfig, reinforce
from ofakit.space import get_space
from ofakit.space.genome import Genome

from tests.search.test_evolution import linear_score
from tests.search.test_specialize import make_bundle

CFG = EvolutionConfig()


def rng(seed=0):
    return np.random.default_rng(seed)


def setup(macs=250e6):
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    return space, genome, linear_score(genome), [macs_limit(genome, macs)]


@pytest.mark.parametrize("reward", [Reward(), Reward("mnas")])
def test_same_seed_same_result_and_every_arch_kept_is_feasible(reward):
    space, genome, score, limits = setup()
    result = reinforce(genome, score, limits, CFG, 1500, rng(3), reward=reward)
    again = reinforce(genome, score, limits, CFG, 1500, rng(3), reward=reward)
    other = reinforce(genome, score, limits, CFG, 1500, rng(4), reward=reward)
    assert again.best == result.best and np.array_equal(again.rows, result.rows)
    assert not np.array_equal(other.rows, result.rows)
    assert space.macs(result.best) <= 250e6 and all(space.macs(a) <= 250e6 for a in result.archs())
    assert result.score == pytest.approx(float(score(genome.encode([result.best]))[0]))
    assert result.score == result.scores.max()
    evals, best = result.anytime[:, 0], result.anytime[:, 1]
    assert (np.diff(evals) >= 0).all() and (np.diff(best) >= 0).all() and best[-1] == result.score


def test_the_controller_learns_the_best_choice_of_every_gene():
    """Reward = share of genes at their target choice (the last one, so every slot is active): the policy's mass
    moves onto the targets, from 1/choices at the start."""
    genome = Genome(get_space("ofa-mbv3-w1.0"))
    target = genome.sizes - 1
    controller = Controller(genome, RLConfig(batch=50))
    start = controller.probs()[np.arange(genome.width), target]
    g = rng()
    for _ in range(150):
        rows = controller.sample(50, g)
        controller.update(rows, (rows == target).mean(axis=1))
    end = controller.probs()[np.arange(genome.width), target]
    assert start.max() <= 1 / 3 + 1e-9 and end.min() > 0.8


@pytest.mark.parametrize("advantage", ["rank", "baseline"])
def test_search_beats_random_sampling_with_either_advantage(advantage):
    from ofakit.search.evolution import random_search

    space, genome, score, limits = setup()
    result = reinforce(genome, score, limits, CFG, 3000, rng(), rl=RLConfig(advantage=advantage))
    baseline = random_search(genome, score, limits, 3000, rng())
    assert result.score > baseline.score


def test_the_soft_reward_trades_score_for_cost():
    """With a steep w the soft reward prefers cheaper archs than the hard one, and scores lower; both meet the
    limit."""
    space, genome, score, limits = setup(400e6)
    hard = reinforce(genome, score, limits, CFG, 3000, rng())
    soft = reinforce(genome, score, limits, CFG, 3000, rng(), reward=Reward("mnas", -2.0))
    assert space.macs(soft.best) < space.macs(hard.best) <= 400e6
    assert soft.score < hard.score


def test_an_infeasible_limit_is_the_shared_error():
    space, genome, score, _ = setup()
    smallest = space.macs(space.smallest())
    for reward in (Reward(), Reward("mnas")):
        with pytest.raises(InfeasibleError, match=rf"no subnet of space 'ofa-mbv3-w1.0' meets the limits together: "
                                                  rf"macs <= 1\.00M \(smallest reached: {smallest / 1e6:.2f}M\)"):
            reinforce(genome, score, [macs_limit(genome, 1e6)], CFG, 200, rng(), reward=reward)


def test_a_limit_met_only_by_the_smallest_is_found():
    space, genome, score, _ = setup()
    result = reinforce(genome, score, [macs_limit(genome, space.macs(space.smallest()))], CFG, 200, rng())
    assert result.best == space.smallest()


@pytest.mark.parametrize("make, message", [
    (lambda: Reward("soft"), r"unknown reward 'soft'; known: hard, mnas"),
    (lambda: Reward("mnas", 0.5), r"--mnas-w must be a finite number <= 0 \(MnasNet uses -0\.07\), got 0\.5"),
    (lambda: RLConfig(advantage="mean"), r"unknown advantage 'mean'; known: rank, baseline"),
    (lambda: RLConfig(batch=1), r"the controller's batch must hold at least 2 archs, got 1"),
])
def test_settings_are_checked(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_cli_rl_with_the_soft_reward_and_the_reward_refused_elsewhere(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.2")
    args = ["specialize", "--device", "note10", "--latency", "30ms", "--bundle", str(bundle), "--budget", "1000",
            "--no-drift", "--json"]
    assert main([*args, "--algorithm", "rl", "--reward", "mnas", "--mnas-w", "-0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["algorithm"] == "rl" and report["reward"] == {"kind": "mnas", "mnas_w": -0.1}
    assert report["latency_ms"] <= 30
    assert main([*args, "--reward", "mnas"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'evolution' holds the limits as hard ones" in err and "--algorithm rl" in err

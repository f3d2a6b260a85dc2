"""Many latency budgets in one run: each pick meets its budget and is at least as good as its own single-budget
search with the same seed; the budget lists and ranges parse, or say how to write them; --out writes one arch file
per budget."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ofakit.cli.main import main
from ofakit.errors import ConfigError
from ofakit.search.algorithms import ALGORITHMS
from ofakit.search.budgets import arch_files, parse_latency_budgets, search_budgets
from ofakit.search.constraints import macs_limit, params_limit
from ofakit.search.evolution import EvolutionConfig
from ofakit.space import get_space
from ofakit.space.genome import Genome

from tests.search.test_evolution import linear_score
from tests.search.test_specialize import make_bundle


@pytest.mark.parametrize("text, budgets", [
    ("25ms", (25.0,)), ("20ms,25ms,0.03s", (20.0, 25.0, 30.0)), ("20ms:40ms:5", (20.0, 25.0, 30.0, 35.0, 40.0)),
    ("1:2:3", (1.0, 1.5, 2.0)),
])
def test_budget_lists_and_ranges(text, budgets):
    assert parse_latency_budgets(text) == budgets


@pytest.mark.parametrize("text, message", [
    ("20ms:40ms:1", r"cannot read latency range '20ms:40ms:1': write START:STOP:COUNT with COUNT a whole number of "
                    r"at least 2, e\.g\. 20ms:40ms:5"),
    ("20:40:many", r"COUNT a whole number"),
    ("40ms:20ms:3", r"latency range '40ms:20ms:3' must rise: START below STOP"),
    ("20ms,20", r"latency budgets '20ms,20' repeat a value; give each once"),
    ("20ms,fast", r"cannot read latency 'fast'"),
])
def test_bad_budgets_say_how_to_write_them(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_latency_budgets(text)


def test_arch_file_names():
    assert arch_files([20.0, 22.5, 30.0]) == ["arch-20ms.json", "arch-22.5ms.json", "arch-30ms.json"]


@pytest.mark.parametrize("algorithm", ["evolution", "rl"])
def test_each_pick_is_at_least_its_single_budget_search(algorithm):
    """MACs stand in for latency here: the picks meet their own budget and never score below the search run for
    that budget alone with the same seed; the loosest budget's finds can only help the tighter ones' neighbours."""
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    score = linear_score(genome)
    params = params_limit(genome, 6e6)  # a second limit, shared by every budget

    def limits_at(macs):
        return [macs_limit(genome, macs), params]

    budgets = [300e6, 200e6, 250e6]
    search, cfg = ALGORITHMS.get(algorithm), EvolutionConfig(population=30, generations=10)
    picks, scored = search_budgets(genome, score, limits_at, budgets, search, cfg, 300, seed=5)
    assert scored >= max(p.evaluations for p in picks)
    for b, pick in zip(budgets, picks):
        single = search(genome, score, limits_at(b), cfg, 300, np.random.default_rng(5))
        assert space.macs(pick.best) <= b and space.params(pick.best) <= 6e6
        assert pick.score >= single.score and pick.costs["macs"] == space.macs(pick.best)
        assert pick.score == pytest.approx(float(score(genome.encode([pick.best]))[0]))
    again, _ = search_budgets(genome, score, limits_at, budgets, search, cfg, 300, seed=5)
    assert [p.best for p in again] == [p.best for p in picks]
    with pytest.raises(ConfigError, match="latency budgets must differ"):
        search_budgets(genome, score, limits_at, [1e8, 1e8], search, cfg, 300, seed=5)


def test_cli_writes_one_arch_per_budget(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.2")
    args = ["specialize", "--device", "note10", "--bundle", str(bundle), "--budget", "1000", "--no-drift"]
    assert main([*args, "--latency", "20ms,30ms", "--out", str(tmp_path / "out"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [e["latency_budget_ms"] for e in report["budgets"]] == [20.0, 30.0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["arch-20ms.json", "arch-30ms.json",
                                                                   "report.json"]
    for entry in report["budgets"]:
        assert entry["latency_ms"] <= entry["latency_budget_ms"]
        arch = json.loads((tmp_path / "out" / f"arch-{entry['latency_budget_ms']:g}ms.json").read_text())
        assert arch == entry["arch"]
        assert main([*args, "--latency", f"{entry['latency_budget_ms']:g}ms", "--json"]) == 0
        single = json.loads(capsys.readouterr().out)
        assert entry["predicted_accuracy"] >= single["predicted_accuracy"]
    assert main([*args, "--latency", "20ms:30ms:3"]) == 0
    table = capsys.readouterr().out
    assert "25 ms" in table and "predicted top-1" in table


def test_verify_takes_one_budget(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.2")
    assert main(["specialize", "--device", "note10", "--bundle", str(bundle), "--latency", "20ms,30ms",
                 "--verify", "calibration", "--no-drift"]) == 2
    assert capsys.readouterr().err.strip() == "ofakit: error: --verify measures one subnet: give one latency budget"


def test_an_infeasible_budget_is_the_shared_error():
    from ofakit.search.constraints import InfeasibleError

    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    smallest = space.macs(space.smallest())
    with pytest.raises(InfeasibleError, match=rf"macs <= 1\.00M \(smallest reached: {smallest / 1e6:.2f}M\)"):
        search_budgets(genome, linear_score(genome), lambda macs: [macs_limit(genome, macs)], [3e8, 1e6],
                       ALGORITHMS.get("evolution"), EvolutionConfig(population=20, generations=3), 60, seed=0)

"""Many latency budgets in one run: evolution's budgets share one search (each pick meets its budget, the looser
budgets' picks are at least the tighter ones', and the work is a fraction of one search per budget); other algorithms
run per budget, each pick at least as good as its own single-budget search with the same seed; the budget lists and
ranges parse, or say how to write them; --out writes one arch file per budget."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ofakit.cli.main import main
from ofakit.errors import ConfigError
from ofakit.rng import Stream
from ofakit.search.algorithms import ALGORITHMS
from ofakit.search.budgets import ShareConfig, arch_files, parse_latency_budgets, search_budgets
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
    ("0.7ms,700us", r"latency budgets '0.7ms,700us' repeat a value; give each once"),  # 0.7 and 0.7000000000000001
    ("1ms,1.0000000001ms", r"repeat a value"),
    ("20.0000001ms,20.0000002ms", r"latency budgets '20.0000001ms,20.0000002ms': 20.0000001 and 20.0000002 ms would "
                                  r"both be written to arch-20ms.json; give budgets that differ within 6 significant"),
])
def test_bad_budgets_say_how_to_write_them(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_latency_budgets(text)


def test_arch_file_names():
    assert arch_files([20.0, 22.5, 30.0]) == ["arch-20ms.json", "arch-22.5ms.json", "arch-30ms.json"]
    assert parse_latency_budgets("700us") == (0.7,)  # not 0.7000000000000001
    with pytest.raises(ConfigError, match=r"would both be written to arch-0.7ms.json"):  # a library caller's values
        arch_files([0.7, 0.7000001])
    with pytest.raises(ConfigError, match=r"latency budgets must differ, got 0.7, 0.7"):
        arch_files([0.7, 0.7000000000000001])


def macs_setting():
    """MACs stand in for latency: the space, its genome, a linear score and the limits at a MACs budget (with a
    params limit shared by every budget)."""
    space = get_space("ofa-mbv3-w1.0")
    genome = Genome(space)
    params = params_limit(genome, 6e6)
    return space, genome, linear_score(genome), lambda macs: [macs_limit(genome, macs), params]


def test_other_algorithms_run_per_budget_and_each_pick_is_at_least_its_own_search():
    """The picks meet their own budget and never score below the search run for that budget alone with the same
    seed; the loosest budget's finds can only help the tighter ones' neighbours."""
    space, genome, score, limits_at = macs_setting()
    budgets = [300e6, 200e6, 250e6]
    search, cfg = ALGORITHMS.get("rl"), EvolutionConfig(population=30, generations=10)
    picks, scored = search_budgets(genome, score, limits_at, budgets, search, cfg, 300, seed=5)
    assert scored >= max(p.evaluations for p in picks)
    for b, pick in zip(budgets, picks):
        single = search(genome, score, limits_at(b), cfg, 300, Stream(5))  # as specialize seeds one budget
        assert space.macs(pick.best) <= b and space.params(pick.best) <= 6e6
        assert pick.score >= single.score and pick.costs["macs"] == space.macs(pick.best)
        assert pick.score == pytest.approx(float(score(genome.encode([pick.best]))[0]))
    again, _ = search_budgets(genome, score, limits_at, budgets, search, cfg, 300, seed=5)
    assert [p.best for p in again] == [p.best for p in picks]
    with pytest.raises(ConfigError, match="latency budgets must differ"):
        search_budgets(genome, score, limits_at, [1e8, 1e8], search, cfg, 300, seed=5)


def test_evolution_shares_one_search_across_the_budgets():
    """Six budgets at 10 of 20 generations each (work 2.4 gives 0.4 each, and at least 10): the picks meet their
    budgets, a looser budget's pick is at least a tighter one's (the store serves them all), they beat their own
    single-budget searches on median, with at most 0.6 of the archs those scored; the same seed gives the same
    picks."""
    space, genome, score, limits_at = macs_setting()
    budgets = [300e6, 200e6, 400e6, 250e6, 350e6, 225e6]
    search, cfg = ALGORITHMS.get("evolution"), EvolutionConfig(population=30, generations=20)
    picks, scored = search_budgets(genome, score, limits_at, budgets, search, cfg, 600, seed=5)
    singles = [search(genome, score, limits_at(b), cfg, 600, Stream(5)) for b in budgets]
    for b, pick in zip(budgets, picks):
        assert space.macs(pick.best) <= b and space.params(pick.best) <= 6e6
        assert pick.costs["macs"] == space.macs(pick.best) and len(pick.history) == 10
        assert pick.score == pytest.approx(float(score(genome.encode([pick.best]))[0]))
    by_budget = [pick.score for _, pick in sorted(zip(budgets, picks), key=lambda bp: bp[0])]
    assert by_budget == sorted(by_budget)
    assert np.median([p.score - s.score for p, s in zip(picks, singles)]) > 0
    assert scored < 0.6 * sum(s.evaluations for s in singles)
    again, _ = search_budgets(genome, score, limits_at, budgets, search, cfg, 600, seed=5)
    assert [p.best for p in again] == [p.best for p in picks]
    with pytest.raises(ConfigError, match=r"work \(0\) must be positive, min_generations \(10\) at least 1"):
        search_budgets(genome, score, limits_at, budgets, search, cfg, 600, seed=5, share=ShareConfig(work=0))
    with pytest.raises(ConfigError, match=r"population \(0\) must be in \(0, 1\]"):
        search_budgets(genome, score, limits_at, budgets, search, cfg, 600, seed=5, share=ShareConfig(population=0))


def test_polish_leaves_each_pick_a_local_optimum():
    """With rounds enough, every pick scores at least as well as each of its one-gene changes under its budget (none
    of which a shorter polish guarantees: without it some pick here has a better neighbour); a small search's polish
    stops at its share of the archs."""
    from ofakit.search.constraints import feasible

    space, genome, score, limits_at = macs_setting()
    budgets = [200e6, 300e6, 250e6]
    search, cfg = ALGORITHMS.get("evolution"), EvolutionConfig(population=30, generations=20)

    def better_neighbours(picks):
        count = 0
        for b, pick in zip(budgets, picks):
            row = genome.encode([pick.best])[0]
            changed = np.array([np.where(np.arange(genome.width) == j, c, row) for j in range(genome.width)
                                for c in range(genome.sizes[j]) if c != row[j] and genome.active(row[None])[0, j]])
            ok, _ = feasible(limits_at(b), changed)
            count += int((score(changed[ok]) > pick.score + 1e-12).sum())
        return count

    plain, n_plain = search_budgets(genome, score, limits_at, budgets, search, cfg, 600, seed=3,
                                    share=ShareConfig(polish=0))
    assert better_neighbours(plain) > 0
    polished, n_polished = search_budgets(genome, score, limits_at, budgets, search, cfg, 600, seed=3,
                                          share=ShareConfig(polish=1000, polish_share=1e9))
    assert better_neighbours(polished) == 0
    assert all(p.score >= q.score for p, q in zip(polished, plain))
    _, n_capped = search_budgets(genome, score, limits_at, budgets, search, cfg, 600, seed=3)
    assert n_plain < n_capped <= n_plain + 2 * 0.1 * n_plain < n_polished
    with pytest.raises(ConfigError, match=r"polish \(-1\) and polish_share \(0.1\) must be at least 0"):
        search_budgets(genome, score, limits_at, budgets, search, cfg, 600, seed=3, share=ShareConfig(polish=-1))


def test_repair_brings_children_under_their_own_budget():
    """Rows over a lane's limit move toward the smallest arch until under it (each its own lane's limit); rows
    already under are left as they were, and a row with no steps left stays over."""
    from ofakit.search.budgets import _repair, _values
    from ofakit.search.evolution import _Evaluator

    space, genome, score, limits_at = macs_setting()
    ev = _Evaluator(genome, score, limits_at(400e6))
    rows = genome.sample(200, np.random.default_rng(0))
    maxima = np.stack([[m, 6e6] for m in np.where(np.arange(200) % 2, 300e6, 400e6)], axis=1)
    smallest = genome.encode([space.smallest()])[0]
    before = _values(ev, ev.check(rows)[1])
    fixed, matrix, ok = _repair(ev, rows.copy(), maxima, smallest, 40, np.random.default_rng(1))
    was_ok = (before <= maxima).all(axis=0)
    assert 0 < was_ok.sum() < ok.sum() and ok.mean() > 0.95
    assert (fixed[was_ok] == rows[was_ok]).all()
    assert np.allclose(matrix, _values(ev, ev.check(fixed)[1])) and (ok == (matrix <= maxima).all(axis=0)).all()
    _, _, none = _repair(ev, rows.copy(), maxima, smallest, 0, np.random.default_rng(1))
    assert (none == was_ok).all()


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
        assert entry["predicted_accuracy"] >= single["predicted_accuracy"] - 1e-3  # within 0.1 points
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

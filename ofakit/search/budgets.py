"""One subnet per latency budget from one search: OFA's "many deployment scenarios from one supernet" (Cai et al.,
"Once-for-All", ICLR 2020) without one process per scenario.

Everything a search needs is set up once (bundle, table, drift, predictor, genome); then the chosen algorithm runs
under each budget exactly as a single-budget search with the same seed would, and every budget's pick is the best
arch scored under it by any of the runs. So each pick is at least as
good as its own single-budget search's, and often better: a tighter budget's finds are feasible for the looser ones.

(Sharing more was measured and dropped: one search under the loosest budget, then short evolutions per budget started
from the best archs kept under it, was better on median by 0.2-0.8 points but up to 0.6 points worse than the
single-budget search at about 1 budget in 7. Caching scores across the budgets saved nothing: their runs share
about 3 % of their archs. Measured again with evolution's restarts: a chain from the loosest budget to the tightest,
each after the first starting from the best archs scored so far under it (all of them, or half and half random ones)
with a quarter of the generations (restarting after 8 or 4) and one score cache, took 2.1-3.1x one budget's time
for 10 budgets, but its worst pick was 0.14-0.79 points below the budget's own search on 5 of 6 (setting, seed)
pairs (note10 20-40 ms and cpu-ort 0.4-0.95 ms, seeds 0-2), while others gained up to 1.5 points.)
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ofakit.errors import ConfigError
from ofakit.search.constraints import Limit, feasible, parse_latency_ms
from ofakit.search.evolution import EvolutionConfig, ScoreFn, SearchResult
from ofakit.space.genome import Genome


def search_budgets(genome: Genome, score: ScoreFn, limits_at: Callable[[float], list[Limit]],
                   budgets: Sequence[float], search: Callable[..., SearchResult], cfg: EvolutionConfig, budget: int,
                   seed: int, **options: Any) -> tuple[list[SearchResult], int]:
    """One result per budget, in the order given, and the number of distinct archs scored in all.

    Args:
        limits_at: the limits at a latency budget (the latency limit and any others).
        search: a registry entry (`ofakit.search.algorithms`), run per budget with `options` and a generator seeded
            with `seed`, as a single-budget search would be.
    """
    if len(set(budgets)) != len(budgets):
        raise ConfigError(f"latency budgets must differ, got {', '.join(f'{b:g}' for b in budgets)}")
    started = time.perf_counter()
    runs = [search(genome, score, limits_at(b), cfg, budget, np.random.default_rng(seed), **options)
            for b in budgets]
    store, scores = _unique(genome, np.concatenate([r.rows for r in runs]), np.concatenate([r.scores for r in runs]))
    _, values = feasible(limits_at(max(budgets)), store)  # the costs do not depend on the budget: once
    picks = []
    for b, run in zip(budgets, runs):  # the best of everything scored: another budget's finds count too
        limits = limits_at(b)
        mask = np.logical_and.reduce([values[lim.name] <= lim.maximum for lim in limits])
        pick = _pick(genome, store[mask], scores[mask], {k: v[mask] for k, v in values.items()}, started)
        pick.history, pick.anytime = run.history, run.anytime
        picks.append(pick)
    return picks, len(store)


def arch_files(budgets: Sequence[float]) -> list[str]:
    """The file names of the budgets' archs: arch-25ms.json, arch-22.5ms.json."""
    return [f"arch-{b:g}ms.json" for b in budgets]


def parse_latency_budgets(text: str) -> tuple[float, ...]:
    """'25ms' -> (25.0,); '20ms,25ms,30ms' -> the list; '20ms:40ms:5' -> 5 evenly spaced from 20 to 40 ms."""
    if text.count(":") == 2:
        start, stop, count = text.split(":")
        if not count.strip().isdigit() or int(count) < 2:
            raise ConfigError(f"cannot read latency range {text!r}: write START:STOP:COUNT with COUNT a whole number "
                              "of at least 2, e.g. 20ms:40ms:5")
        low, high = parse_latency_ms(start), parse_latency_ms(stop)
        if not low < high:
            raise ConfigError(f"latency range {text!r} must rise: START below STOP, e.g. 20ms:40ms:5")
        return tuple(float(round(b, 6)) for b in np.linspace(low, high, int(count)))
    budgets = tuple(parse_latency_ms(part) for part in text.split(","))
    if len(set(budgets)) != len(budgets):
        raise ConfigError(f"latency budgets {text!r} repeat a value; give each once")
    return budgets


def _unique(genome: Genome, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of distinct archs (first of each), with their scores."""
    _, first = np.unique(genome.keys(rows), return_index=True)
    first.sort()
    return rows[first], scores[first]


def _pick(genome: Genome, rows: np.ndarray, scores: np.ndarray, values: dict[str, np.ndarray],
          started: float) -> SearchResult:
    """The best of `rows` (all feasible; `values`: each limit's value for them) as a result holding them all."""
    best = int(np.argmax(scores))
    return SearchResult(genome.decode(rows[best : best + 1])[0], float(scores[best]),
                        {k: float(v[best]) for k, v in values.items()}, len(rows), time.perf_counter() - started,
                        genome=genome, rows=rows, scores=scores)

"""One subnet per latency budget from one search: OFA's "many deployment scenarios from one supernet" (Cai et al.,
"Once-for-All", ICLR 2020) without one process per scenario.

Everything a search needs is set up once (bundle, table, drift, predictor, genome). With evolution (the default) the
budgets then share one search (`shared_evolution`): one evolution per budget, run generation by generation side by
side over one store of scored archs, each breeding children that meet its own budget, with the best archs scored so
far under its budget (by any of them) competing with its population for parents, as an island model with an archive
would (Whitley et al., "The island model genetic algorithm", 1998). An arch feasible at 0.5 ms is feasible at 0.6 ms,
so a tight budget's finds seed the looser ones, and a loose budget's children that land under a tighter limit count
there. The tightest budget gets no such help from below; a second population there, without the archive and
restarting when stalled, keeps exploring it. Each budget runs 3/n of a single-budget search's generations
(`ShareConfig`), the children of all budgets are checked and scored together each generation, and each budget's pick
is the best arch scored under it by any of them.

Measured by `bench/many_budgets.py` (10 budgets, seeds 0-9; ~15,000 archs scored where each budget's own search
scored ~4,600): the picks were on median as good as their own single-budget searches or better (+0.20 points on
MIT's tutorial predictor at Note10, 0.00 on the reference bundle), but 3 in 100 on the reference bundle (the two
loosest budgets, down to -0.15) and 17 in 100 on Note10's rugged stand-in predictor (down to -1.79) fell more than
0.1 points below: with a third of the work per budget, the search does not match a lucky single run everywhere.

Other algorithms run once per budget exactly as a single-budget search with the same seed would, and every budget's
pick is the best arch scored under it by any of the runs, so each pick is at least as good as its own search's.

(Measured and dropped: a chain from the loosest budget to the tightest, each starting from the best archs scored so
far under it with a quarter of the generations, took 2.1-3.1x one budget's time for 10 budgets, but its worst pick
was 0.14-0.79 points below the budget's own search on 5 of 6 (setting, seed) pairs. In the shared search, counting
picks more than 0.1 points below their own search: 5 archive archs among the parents instead of 25 (Note10: 11 in 40
against 3), none (more still), parents from the budget's own latency band only (6 in 40), two half-size populations
per budget (24 in 50), a second population at the loosest budget or at a virtual budget above it (Note10: 15-18 in
50 against 4), more generations for the looser budgets and fewer for the tighter (reference: 10-23 in 100 against
3), smaller populations over all the generations (reference: 10-13 in 90 against 2). On Note10 any such change moves
which budgets fall below more than how many: its predictor's optima are far apart.)
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofakit.errors import ConfigError
from ofakit.search.algorithms import ALGORITHMS
from ofakit.search.constraints import Limit, feasible, parse_latency_ms
from ofakit.search.evolution import EvolutionConfig, ScoreFn, SearchResult, _Evaluator, _infeasible
from ofakit.space.genome import Genome


@dataclass(frozen=True)
class ShareConfig:
    work: float = 3.0  # the budgets' generations together, in single-budget searches (at most one per budget)
    min_generations: int = 10  # but each budget at least this many (or all of cfg.generations): evolution climbs
    # over generations, and sharing does not replace them (on a linear score, 10 budgets at 3 of 10 generations each
    # picked 0.4-2.6 below their own searches; at 10 generations each, 6-8 above)
    elites: int = 25  # the best archs scored so far under a budget that compete with its population for parents
    explore: bool = True  # a second population at the tightest budget, without the archive (as long as the others)


def search_budgets(genome: Genome, score: ScoreFn, limits_at: Callable[[float], list[Limit]],
                   budgets: Sequence[float], search: Callable[..., SearchResult], cfg: EvolutionConfig, budget: int,
                   seed: int, *, share: ShareConfig = ShareConfig(), **options: Any) -> tuple[list[SearchResult], int]:
    """One result per budget, in the order given, and the number of distinct archs scored in all.

    Args:
        limits_at: the limits at a latency budget (the latency limit and any others).
        search: a registry entry (`ofakit.search.algorithms`). Evolution runs as `shared_evolution` with a generator
            seeded with `seed`; any other runs per budget with `options` and such a generator, as a single-budget
            search would.
    """
    if len(set(budgets)) != len(budgets):
        raise ConfigError(f"latency budgets must differ, got {', '.join(f'{b:g}' for b in budgets)}")
    if search is ALGORITHMS.get("evolution") and getattr(options.get("reward"), "kind", "hard") == "hard":
        return shared_evolution(genome, score, limits_at, budgets, cfg, np.random.default_rng(seed), share)
    started = time.perf_counter()
    runs = [search(genome, score, limits_at(b), cfg, budget, np.random.default_rng(seed), **options)
            for b in budgets]
    store, scores = _unique(genome, np.concatenate([r.rows for r in runs]), np.concatenate([r.scores for r in runs]))
    _, values = feasible(limits_at(max(budgets)), store)  # the costs do not depend on the budget: once
    picks = [_best_under(genome, store, scores, values, limits_at(b), started) for b in budgets]
    for pick, run in zip(picks, runs):  # the best of everything scored: another budget's finds count too
        pick.history, pick.anytime = run.history, run.anytime
    return picks, len(store)


def shared_evolution(genome: Genome, score: ScoreFn, limits_at: Callable[[float], list[Limit]],
                     budgets: Sequence[float], cfg: EvolutionConfig, rng: np.random.Generator,
                     share: ShareConfig = ShareConfig()) -> tuple[list[SearchResult], int]:
    """Evolution under every budget at once over one store (see the module docstring); one result per budget, in
    the order given, and the number of distinct archs scored in all.

    Each budget's population breeds as `evolve`'s does (`cfg`: its size, parents, mutation and crossover, restarts
    after `cfg.restart_after` stalled generations), for `share.work / len(budgets)` of `cfg.generations` (at least
    `share.min_generations`, at most all), with the `share.elites` best archs scored under its budget by any of them
    among the candidates for parents.
    """
    if not share.work > 0 or share.min_generations < 1 or share.elites < 0:
        raise ConfigError(f"work ({share.work}) must be positive, min_generations ({share.min_generations}) at least 1 "
                          f"and elites ({share.elites}) at least 0")
    if not 0 < cfg.parents <= 1 or not 0 <= cfg.mutation_share <= 1:
        raise ConfigError(f"parents ({cfg.parents}) must be in (0, 1] and mutation_share ({cfg.mutation_share}) in "
                          "[0, 1]: shares of the population")
    started = time.perf_counter()
    limits = limits_at(max(budgets))
    ev = _Evaluator(genome, _chunked(score, cfg.population), limits)  # in batches as a single search's
    generations = min(cfg.generations, max(share.min_generations, round(share.work / len(budgets) * cfg.generations)))
    own = {b: _Lane(limits_at(b), share.elites > 0) for b in budgets}
    lanes = [own[b] for b in sorted(budgets)]
    if share.explore:  # the tightest budget's second population: no archive, restarts
        lanes.insert(0, _Lane(limits_at(min(budgets)), False))
    n_parents = max(2, int(round(cfg.parents * cfg.population)))
    for lane, population in zip(lanes, _first_populations(ev, lanes, cfg, rng)):
        lane.population = population
    for _ in range(generations):
        if share.elites:
            _update_elites(ev, lanes, share.elites)
        parents = [lane.parents(ev.scores, n_parents) for lane in lanes]
        stuck = [j for j, lane in enumerate(lanes) if cfg.restart_after and lane.stalled >= cfg.restart_after]
        if stuck:  # as evolve: start again from fresh random feasible archs
            for j, population in zip(stuck, _first_populations(ev, [lanes[j] for j in stuck], cfg, rng)):
                lanes[j].population = population
                parents[j] = lanes[j].parents(ev.scores, n_parents, restart=True)
        for lane in lanes:
            lane.history.append(max(lane.top, lane.history[-1]) if lane.history else lane.top)
        _breed(ev, lanes, parents, cfg, rng)
        ev.score_new()  # the children of every budget in one call
    store, scores = ev.rows[: ev.n], ev.scores[: ev.n]
    values = {name: v[: ev.n] for name, v in ev.costs.items()}
    picks = []
    for b in budgets:
        pick = _best_under(genome, store, scores, values, limits_at(b), started)
        pick.history = own[b].history
        picks.append(pick)
    return picks, ev.n


class _Lane:
    """One population of the shared search: its limits, whether the archive's best join its parents, and its
    state."""

    def __init__(self, limits: list[Limit], archive: bool) -> None:
        self.limits, self.archive = limits, archive
        self.maxima = np.array([lim.maximum for lim in limits])
        self.population = np.zeros(0, dtype=np.int64)  # store indices
        self.elites = np.zeros(0, dtype=np.int64)  # the best store indices under the limits (with `archive`)
        self.elites_seen = 0  # store indices below this were merged into `elites`
        self.rate = {"mutate": 1.0, "cross": 1.0}  # share of the last batch that was feasible and new
        self.stalled, self.top = 0, -np.inf  # generations without a better best; the best since the last restart
        self.history: list[float] = []

    def under(self, values: np.ndarray) -> np.ndarray:
        """Which columns of `values` ([limits, n], in the order of this lane's limits) meet them all."""
        return (values <= self.maxima[:, None]).all(axis=0)

    def parents(self, scores: np.ndarray, n: int, restart: bool = False) -> np.ndarray:
        """The best `n` of the population (and the elites, unless just restarted); counts a stalled generation."""
        pool = self.population if restart or not self.archive else np.union1d(self.population, self.elites)
        best = pool[np.argsort(-scores[pool], kind="stable")[:n]]
        if restart or scores[best[0]] > self.top:
            self.stalled, self.top = 0, float(scores[best[0]])
        else:
            self.stalled += 1
        return best


def _values(ev: _Evaluator, values: dict[str, np.ndarray]) -> np.ndarray:
    """The limits' values as one array [limits, n], in the evaluator's order (every lane's too)."""
    return np.stack([values[lim.name] for lim in ev.limits])


def _update_elites(ev: _Evaluator, lanes: list[_Lane], keep: int) -> None:
    """Merge the archs stored since the last call into each archive lane's `keep` best under its limits."""
    for lane in lanes:
        if lane.archive:
            since = lane.elites_seen
            values = _values(ev, {name: v[since : ev.n] for name, v in ev.costs.items()})
            pool = np.concatenate([lane.elites, since + np.flatnonzero(lane.under(values))])
            lane.elites, lane.elites_seen = pool[np.argsort(-ev.scores[pool], kind="stable")[:keep]], ev.n


def _first_populations(ev: _Evaluator, lanes: list[_Lane], cfg: EvolutionConfig,
                       rng: np.random.Generator) -> list[np.ndarray]:
    """`cfg.population` distinct random archs under each lane's limits (store indices), from one stream of draws (a
    tight lane's archs serve the looser ones too), scored in one batch. InfeasibleError names the limit no drawn
    arch, nor the space's smallest, met."""
    n, genome = cfg.population, ev.genome
    got: list[list[int]] = [[] for _ in lanes]
    taken: list[set[int]] = [set() for _ in lanes]
    for _ in range(cfg.sample_tries):
        rows = genome.sample(4 * n, rng)
        _, values = ev.check(rows)
        keys, matrix = genome.keys(rows), _values(ev, values)
        chosen = [_distinct(np.flatnonzero(lane.under(matrix)), keys, taken[j], n - len(got[j]))
                  for j, lane in enumerate(lanes)]
        at = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *chosen]))
        stored = ev.add(rows[at], {k: v[at] for k, v in values.items()}, keys[at], later=True)
        for j, rows_at in enumerate(chosen):
            got[j].extend(stored[np.searchsorted(at, rows_at)].tolist())
        if all(len(g) >= n for g in got):
            break
    ev.score_new()
    for j, lane in enumerate(lanes):
        if not got[j]:  # as evolve: the space's smallest arch, or the infeasible error
            lone = _Evaluator(genome, ev.score, lane.limits)
            smallest = lone.add_feasible(genome.encode([genome.space.smallest()]))
            if not len(smallest):
                raise _infeasible(lone)
            got[j] = ev.add_feasible(lone.rows[smallest]).tolist()
    return [np.array(g, dtype=np.int64) for g in got]


def _distinct(at: np.ndarray, keys: np.ndarray, taken: set[int], want: int) -> np.ndarray:
    """The first `want` of rows `at` whose keys are not in `taken` (which grows)."""
    out: list[int] = []
    for i, k in zip(at.tolist(), keys[at].tolist()):
        if len(out) >= want:
            break
        if k not in taken:
            taken.add(k)
            out.append(i)
    return np.array(out, dtype=np.int64)


def _breed(ev: _Evaluator, lanes: list[_Lane], parents: list[np.ndarray], cfg: EvolutionConfig,
           rng: np.random.Generator) -> None:
    """Each lane's next population: its parents and `cfg.population` new children under its limits (mutants and
    crossovers, sized as `evolve` sizes them), every lane's proposals checked in one call per round and the children
    stored to be scored in the caller's batch."""
    genome, size = ev.genome, cfg.population
    quota = {"mutate": int(round(cfg.mutation_share * size))}
    quota["cross"] = max(0, size - quota["mutate"])
    need = [dict(quota) for _ in lanes]
    taken = [set(ev.keys[p].tolist()) for p in parents]
    children = [[p] for p in parents]
    idle = 0
    for _ in range(cfg.sample_tries):
        parts = [(j, kind) for j in range(len(lanes)) for kind in ("mutate", "cross") if need[j][kind] > 0]
        if not parts or idle >= 3:
            break
        idle += 1
        batches = []
        for j, kind in parts:
            pool = ev.rows[parents[j]]
            n = min(20 * size, int(np.ceil(1.2 * need[j][kind] / max(lanes[j].rate[kind], 0.02))) + 1)
            if kind == "mutate":
                batches.append(genome.mutate(pool[rng.integers(len(pool), size=n)], rng, cfg.mutation_prob))
            else:
                batches.append(genome.crossover(pool[rng.integers(len(pool), size=n)],
                                                pool[rng.integers(len(pool), size=n)], rng))
        rows = np.concatenate(batches)
        _, values = ev.check(rows)
        keys, matrix = genome.keys(rows), _values(ev, values)
        chosen, start = [], 0
        for (j, kind), batch in zip(parts, batches):
            span = np.arange(start, start + len(batch))
            start += len(batch)
            span = span[lanes[j].under(matrix[:, span])]
            got, hits, seen, want = [], 0, taken[j], need[j][kind]
            for i, k in zip(span.tolist(), keys[span].tolist()):  # as evolve's _pick_parts
                if k in seen:
                    continue
                hits += 1
                if len(got) < want:
                    seen.add(k)
                    got.append(i)
            lanes[j].rate[kind] = 0.5 * lanes[j].rate[kind] + 0.5 * hits / len(batch)
            chosen.append(got)
        at = np.unique(np.array([i for got in chosen for i in got], dtype=np.int64))
        stored = ev.add(rows[at], {k: v[at] for k, v in values.items()}, keys[at], later=True)
        for (j, kind), got in zip(parts, chosen):
            if got:
                children[j].append(stored[np.searchsorted(at, got)])
                need[j][kind] -= len(got)
                idle = 0
    for lane, kids in zip(lanes, children):
        lane.population = np.concatenate(kids)


def _chunked(score: ScoreFn, size: int) -> ScoreFn:
    """`score` called on at most `size` rows at a time (a tree ensemble walks a few thousand rows at once about
    twice as slowly per row as a hundred; a small MLP is as fast either way)."""
    def run(rows: np.ndarray) -> np.ndarray:
        if len(rows) <= size:
            return score(rows)
        return np.concatenate([score(rows[i : i + size]) for i in range(0, len(rows), size)])
    return run


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


def _best_under(genome: Genome, rows: np.ndarray, scores: np.ndarray, values: dict[str, np.ndarray],
                limits: list[Limit], started: float) -> SearchResult:
    """The best of `rows` (`values`: each limit's value for them) under `limits`, as a result holding every row
    under them."""
    mask = np.logical_and.reduce([values[lim.name] <= lim.maximum for lim in limits])
    rows, scores, values = rows[mask], scores[mask], {k: v[mask] for k, v in values.items()}
    best = int(np.argmax(scores))
    return SearchResult(genome.decode(rows[best : best + 1])[0], float(scores[best]),
                        {k: float(v[best]) for k, v in values.items()}, len(rows), time.perf_counter() - started,
                        genome=genome, rows=rows, scores=scores)

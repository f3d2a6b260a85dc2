"""One subnet per latency budget from one search: OFA's "many deployment scenarios from one supernet" (Cai et al.,
"Once-for-All", ICLR 2020) without one process per scenario.

Everything a search needs is set up once (bundle, table, drift, predictor, genome). With evolution (the default) the
budgets then share one search (`shared_evolution`): one evolution per budget, run generation by generation side by side
over one store of scored archs, each breeding children that meet its own budget, with the best archs scored so far under
its budget (by any of them) competing with its population for parents, as an island model with an archive would (Whitley
et al., "The island model genetic algorithm", 1998). An arch feasible at 0.5 ms is feasible at 0.6 ms, so a tight
budget's finds seed the looser ones, and a loose budget's children that land under a tighter limit count there. The
other way round, each budget also breeds from the next looser budget's best parents, and a child over its limit takes a
few steps toward the space's smallest arch before it is dropped (a repair, as constrained genetic algorithms do), so a
loose budget's finds reach the tighter ones near their limit, where the best archs lie. The loosest budget gets no such
help from above; a second population there, without the archive and restarting when stalled, keeps exploring it. Each
budget runs 2.4/n of a single-budget search's archs (`ShareConfig`), the children of all budgets are proposed, repaired,
checked and scored together each generation. Last, each budget's best arch is polished by steepest ascent over its
one-gene changes under the budget (a local search after the genetic one, as memetic algorithms do; Moscato, 1989), all
budgets' in one batch a round, at most 5 rounds and about 6 % more archs. Each budget's pick is the best arch scored
under it by any of them.

Measured by `bench/many_budgets.py` at work 2.4 (2026-12-06; 10 budgets; ~13,800-14,200 archs scored where each budget's
own search scored ~4,500-5,000; 2.2-2.7x one budget's time): on seeds 0-9, 5 of 100 picks on the reference bundle and 26
of 100 on Note10 fell more than 0.1 points below their own search (a single search falls that far below another seed's
in 13-18 and 42 of 100). Before, at work 2.8 (~15,400-16,400 archs; 2.5x and 2.9x, and 3.3x on an Intel Xeon): on seeds
0-9 the picks were on median as good as their own single-budget searches or better (+0.22 points on MIT's tutorial
predictor at Note10, 0.00 on the reference bundle); none of 100 on the reference bundle fell more than 0.1 points below
(worst -0.10), but 27 in 100 on Note10's rugged stand-in predictor did (down to -1.27). That bar lies inside the single
search's own noise: on the same seeds a single search fell more than 0.1 points below the next seed's single search in 4
and 42 of 100 (budget, seed) pairs. The polish took the misses from 2 and 34 in 100 to 0 and 27 (on the tuning seeds
100-129: from 14 to 6 in 300 on the reference bundle, from 92 to 54 on Note10; 2, 3 and 8 rounds: 8, 7, 5 and 64, 57,
49). Before the polish, on seeds 100-159 (Note10) and 100-129 (reference), where the settings were chosen, at the same
time as the shared search without the looser budgets' parents, repair, half mutation rate and second population at the
loosest budget (which had it at the tightest): 11 in 300 below on the reference bundle against 23, 140 in 600 on Note10
against 144. With a fraction of the work per budget, the search does not match a lucky single run everywhere on a rugged
score: its misses fall with more work (Note10, seeds 100-129: 25 in 300 at 4.5 single searches' archs, 15 at 6; a single
search with 4x the generations still falls below another seed's in 8 % of pairs).

Other algorithms run once per budget exactly as a single-budget search with the same seed would, and every budget's
pick is the best arch scored under it by any of the runs, so each pick is at least as good as its own search's.

(The work was 2.8 single searches until 2026-12-06, when the reference bundle's 10 budgets took 3.2-3.3x one budget's
time on an Intel Xeon: at 2.4 (12 of 50 generations a budget instead of 14), seeds 0-19, 12 of 200 picks more than 0.1
below their own search on the reference bundle and 40 of 200 on Note10, against 6 and 35 at 2.8. Measured and dropped
then: retiring a looser budget's population once its best arch met the next tighter budget for 8 generations in a row
(13 and 57 of 200 at the same archs as work 2.4; at 3 and 5 generations, 14 and 13 of 100 on the reference bundle), and
no second population at the loosest budget (9 of 100 there). Measured and dropped before: the work split over 2 or 3
independent shared searches, each pick the best of them (Note10, seeds 100-129: 137 and 106 in 300 below, against 92:
each gets too few generations); a chain from the loosest budget to the tightest, each starting from the best archs
scored so far under it with a quarter of the generations, took 2.1-3.1x one budget's time for 10 budgets, but its worst
pick was 0.14-0.79 points below the budget's own search on 5 of 6 (setting, seed) pairs. In the shared search, counting
picks more than 0.1 points below their own search: 5 archive archs among the parents instead of 25 (Note10: 11 in 40
against 3), none (more still), parents from the budget's own latency band only (6 in 40), two half-size populations per
budget (24 in 50), more generations for the looser budgets and fewer for the tighter (reference: 10-23 in 100 against
3). On seeds 100-159 (Note10) / 100-129 (reference): half-size populations for twice the generations (90 in 600 against
120 at work 3, but ~25 % more time per arch: at equal time, 138 in 600), three quarters of the children by mutation (190
in 600), ranking proposals by a linear fit of the scores so far before scoring (no change), each budget breeding from
its own population only for its first 5 or 8 generations (75-108 in 300 against 57-76), a second population at both ends
(no better), repair without the looser parents or the reverse (reference: 10 and 17 in 300 against 6), each population's
first draws as evolve's (the best half of twice as many: seeds 0-9, 33 and 3 in 100 against 34 and 2, the reference
bundle's time 3.2x one budget's).)"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ofakit.errors import ConfigError
from ofakit.rng import Draws, Stream
from ofakit.search.algorithms import ALGORITHMS
from ofakit.search.constraints import Limit, feasible, parse_latency_ms
from ofakit.search.evolution import EvolutionConfig, ScoreFn, SearchResult, _Evaluator, _infeasible
from ofakit.space.genome import Genome


@dataclass(frozen=True)
class ShareConfig:
    work: float = 2.4  # the budgets' generations together, in single-budget searches (at most one per budget)
    min_generations: int = 10  # but each budget at least this many (or all of cfg.generations): evolution climbs
    # over generations, and sharing does not replace them (on a linear score, 10 budgets at 3 of 10 generations each
    # picked 0.4-2.6 below their own searches; at 10 generations each, 6-8 above)
    population: float = 1.0  # each budget's population, as a share of cfg.population, for as many more generations
    # (the same archs scored: evolution climbs over generations)
    mutation_prob: float = 0.05  # per-gene probability of a redraw in a mutation (evolve's: cfg.mutation_prob)
    elites: int = 25  # the best archs scored so far under a budget that compete with its population for parents
    migrate: int = 6  # the best parents of the next looser budget's population that join a budget's parents
    repair: int = 6  # steps (one gene one choice toward the space's smallest arch) that may bring a child under
    # its budget before it is dropped: a looser budget's parents breed children near the tighter limit
    explore: bool = True  # a second population at the loosest budget, without the archive (as long as the others)
    polish: int = 5  # then rounds of steepest ascent from each budget's best over its one-gene changes under the
    # budget (0: none); a tighter budget's polished best is a looser one's start when it scores higher
    polish_share: float = 0.1  # no new round that would take the polish, at the last round's size, past this share
    # of the archs bred before it (a small search is not swamped by its budgets' neighbourhoods)


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
    check_budgets(budgets)
    if search is ALGORITHMS.get("evolution") and getattr(options.get("reward"), "kind", "hard") == "hard":
        return shared_evolution(genome, score, limits_at, budgets, cfg, Stream(seed), share)
    started = time.perf_counter()
    runs = [search(genome, score, limits_at(b), cfg, budget, Stream(seed), **options)
            for b in budgets]
    store, scores = _unique(genome, np.concatenate([r.rows for r in runs]), np.concatenate([r.scores for r in runs]))
    _, values = feasible(limits_at(max(budgets)), store)  # the costs do not depend on the budget: once
    picks = [_best_under(genome, store, scores, values, limits_at(b), started) for b in budgets]
    for pick, run in zip(picks, runs):  # the best of everything scored: another budget's finds count too
        pick.history, pick.anytime = run.history, run.anytime
    return picks, len(store)


def shared_evolution(genome: Genome, score: ScoreFn, limits_at: Callable[[float], list[Limit]],
                     budgets: Sequence[float], cfg: EvolutionConfig, rng: Draws,
                     share: ShareConfig = ShareConfig()) -> tuple[list[SearchResult], int]:
    """Evolution under every budget at once over one store (see the module docstring); one result per budget, in
    the order given, and the number of distinct archs scored in all.

    Each budget's population breeds as `evolve`'s does (`cfg`: its parents, mutation and crossover, restarts after
    `cfg.restart_after` stalled generations), with `share.population` of `cfg.population` archs and
    `share.mutation_prob`, for `share.work / len(budgets)` of a single search's archs (at least
    `share.min_generations` generations, at most a single search's archs), with the `share.elites` best archs scored
    under its budget by any of them among the candidates for parents, and children bred from the next looser
    budget's `share.migrate` best parents too (`share.repair` steps bring them under the budget).
    """
    if not share.work > 0 or share.min_generations < 1 or min(share.elites, share.migrate, share.repair) < 0:
        raise ConfigError(f"work ({share.work}) must be positive, min_generations ({share.min_generations}) at least 1 "
                          f"and elites ({share.elites}), migrate ({share.migrate}) and repair ({share.repair}) at "
                          "least 0")
    if share.polish < 0 or not share.polish_share >= 0:
        raise ConfigError(f"polish ({share.polish}) and polish_share ({share.polish_share}) must be at least 0")
    if not 0 < share.population <= 1 or not 0 <= share.mutation_prob <= 1:
        raise ConfigError(f"population ({share.population}) must be in (0, 1] and mutation_prob "
                          f"({share.mutation_prob}) in [0, 1]")
    if not 0 < cfg.parents <= 1 or not 0 <= cfg.mutation_share <= 1:
        raise ConfigError(f"parents ({cfg.parents}) must be in (0, 1] and mutation_share ({cfg.mutation_share}) in "
                          "[0, 1]: shares of the population")
    started = time.perf_counter()
    limits = limits_at(max(budgets))
    ev = _Evaluator(genome, _chunked(score, cfg.population), limits)  # in batches as a single search's
    single = cfg.generations * cfg.population  # a single search's archs
    cfg = replace(cfg, population=max(2, round(share.population * cfg.population)), mutation_prob=share.mutation_prob)
    generations = min(single // cfg.population,
                      max(share.min_generations, round(share.work / len(budgets) * single / cfg.population)))
    own = {b: _Lane(limits_at(b), share.elites > 0) for b in budgets}
    lanes = [own[b] for b in sorted(budgets)]
    if share.explore:  # the loosest budget's second population: no archive, restarts
        lanes.append(_Lane(limits_at(max(budgets)), False))
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
        _breed(ev, lanes, parents, cfg, share, rng)
        ev.score_new()  # the children of every budget in one call
    _polish(ev, [own[b] for b in sorted(budgets)], share.polish, share.polish_share * ev.n)
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
        self.rate = np.ones(2)  # share of the last batch of mutants, of crossovers, that was feasible and new
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


def _polish(ev: _Evaluator, lanes: list[_Lane], rounds: int, most: float) -> None:
    """Up to `rounds` rounds of steepest ascent, none begun that would, at the last round's size, store more than
    `most` archs in all. Each round, every lane's best stored arch under its limits whose one-gene changes were not
    tried yet has them all checked, those under its limits are stored, and all lanes' are scored in one batch. A lane
    stops when its best is a local optimum (every one-gene change under its limits scores no higher); a tighter
    lane's better find, under the looser limits too, becomes the looser lane's start."""
    genome = ev.genome
    gene = np.repeat(np.arange(genome.width), genome.sizes)  # every (gene, choice) pair
    choice = np.concatenate([np.arange(n) for n in genome.sizes])
    tried: set[tuple[int, int]] = set()  # (lane, store index) whose one-gene changes under the lane were checked
    before, last = ev.n, 0  # last: archs the last round stored
    for _ in range(rounds):
        if ev.n - before + last > most:
            return
        round_start = ev.n
        starts, lane_of = [], []
        stored = _values(ev, {name: v[: ev.n] for name, v in ev.costs.items()})
        for j, lane in enumerate(lanes):
            under = np.flatnonzero(lane.under(stored))
            best = int(under[np.argmax(ev.scores[under])]) if len(under) else -1
            if best >= 0 and (j, best) not in tried:
                tried.add((j, best))
                starts.append(best)
                lane_of.append(j)
        if not starts:
            return
        rows = ev.rows[np.array(starts)]
        active = genome.active(rows)
        keep = (choice[None, :] != rows[:, gene]) & active[:, gene]  # [start, pair]: a real change of an active gene
        at, pair = np.nonzero(keep)
        changed = rows[at]
        changed[np.arange(len(at)), gene[pair]] = choice[pair]
        maxima = np.stack([lanes[j].maxima for j in lane_of], axis=1)[:, at]  # [limits, row]
        _, values = ev.check(changed)
        ok = (_values(ev, values) <= maxima).all(axis=0)
        ev.add(changed[ok], {k: v[ok] for k, v in values.items()})  # stores and scores the new archs only
        last = ev.n - round_start


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
            lane.elites, lane.elites_seen = ev.top(pool, keep), ev.n


def _first_populations(ev: _Evaluator, lanes: list[_Lane], cfg: EvolutionConfig,
                       rng: Draws) -> list[np.ndarray]:
    """`cfg.population` distinct random archs under each lane's limits (store indices), from one stream of draws (a
    tight lane's archs serve the looser ones too), scored in one batch. InfeasibleError names the limit no drawn
    arch, nor the space's smallest, met."""
    n, genome = cfg.population, ev.genome
    got: list[list[int]] = [[] for _ in lanes]
    taken: list[set[int]] = [set() for _ in lanes]
    left, size = cfg.sample_tries * 4 * n, 4 * n  # draws in all (as many as `sample_tries` batches of 4n), this batch
    hits, seen = np.zeros(len(lanes)), 0  # rows under each lane's limits so far, rows drawn
    while left > 0:
        rows = genome.sample(size, rng)
        left -= size
        _, values = ev.check(rows)
        keys, matrix = genome.keys(rows), _values(ev, values)
        under = [np.flatnonzero(lane.under(matrix)) for lane in lanes]
        chosen = [_distinct(at, keys, taken[j], n - len(got[j])) for j, at in enumerate(under)]
        at = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *chosen]))
        stored = ev.add(rows[at], {k: v[at] for k, v in values.items()}, keys[at], later=True)
        for j, rows_at in enumerate(chosen):
            got[j].extend(stored[np.searchsorted(at, rows_at)].tolist())
        short = np.array([n - len(g) for g in got])
        if not short.any():
            break
        hits += [len(u) for u in under]
        seen += len(rows)
        # the next batch as large as the scarcest lane needs (a tight limit meets few random archs), at most 32 x
        size = int(min(left, 32 * n, max(4 * n, np.ceil(1.2 * np.max(short * seen / np.maximum(hits, 0.5))))))
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
           share: ShareConfig, rng: Draws) -> None:
    """Each lane's next population: its parents and `cfg.population` new children under its limits (mutants and
    crossovers, sized as `evolve` sizes them, of its parents and the next looser lane's `share.migrate` best), all
    lanes' proposals made, repaired and checked together in each round and the children stored to be scored in the
    caller's batch."""
    genome, size, width = ev.genome, cfg.population, len(lanes)
    mutants = int(round(cfg.mutation_share * size))
    need = np.tile([mutants, max(0, size - mutants)], (width, 1))  # [lane, mutate / cross]
    pools = [np.concatenate([p, parents[j + 1][: share.migrate]]) if j + 1 < width else p
             for j, p in enumerate(parents)]
    pool, pool_size = ev.rows[np.concatenate(pools)], np.array([len(p) for p in pools])
    pool_start = np.cumsum(pool_size) - pool_size
    maxima = np.stack([lane.maxima for lane in lanes], axis=1)  # [limits, lanes]
    smallest = genome.encode([genome.space.smallest()])[0]
    taken = np.concatenate([_tagged(ev.keys[p], j) for j, p in enumerate(parents)])  # (lane, arch) pairs
    rate = np.stack([lane.rate for lane in lanes])
    born_lane, born = [], []
    idle = 0
    for _ in range(cfg.sample_tries):
        if not need.any() or idle >= 3:
            break
        idle += 1
        count = np.where(need > 0, np.minimum(20 * size, np.ceil(1.2 * need / np.maximum(rate, 0.02)) + 1), 0)
        count = count.astype(np.int64)
        part = np.repeat(np.arange(2 * width), count.ravel())  # 2 * lane + kind, lane by lane
        lane, cross = part // 2, (part % 2).astype(bool)
        drawn = pool_start[lane, None] + (rng.random((len(part), 2)) * pool_size[lane, None]).astype(np.int64)
        rows = pool[drawn[:, 0]]
        rows[cross] = genome.crossover(rows[cross], pool[drawn[cross, 1]], rng)
        rows[~cross] = genome.mutate(rows[~cross], rng, cfg.mutation_prob)
        new = _first_new(_tagged(genome.keys(rows), lane), np.arange(len(rows)), taken)  # no repair for a copy
        rows, lane, part = rows[new], lane[new], part[new]
        rows, matrix, ok = _repair(ev, rows, maxima[:, lane], smallest, share.repair, rng)
        keys = genome.keys(rows)
        tagged = _tagged(keys, lane)
        fresh = _first_new(tagged, np.flatnonzero(ok), taken)  # under the lane's limits and new to it
        hits = np.bincount(part[fresh], minlength=2 * width).reshape(width, 2)
        rate = np.where(count > 0, 0.5 * rate + 0.5 * hits / np.maximum(count, 1), rate)
        rank = np.arange(len(fresh)) - np.searchsorted(part[fresh], part[fresh])  # within its part
        got = fresh[rank < need.ravel()[part[fresh]]]
        if not len(got):
            continue
        idle = 0
        need -= np.bincount(part[got], minlength=2 * width).reshape(width, 2)
        taken = np.concatenate([taken, tagged[got]])
        born.append(ev.add(rows[got], {lim.name: matrix[i, got] for i, lim in enumerate(ev.limits)}, keys[got],
                           later=True))
        born_lane.append(lane[got])
    by_lane = np.concatenate([np.zeros(0, dtype=np.int64), *born_lane])
    stored = np.concatenate([np.zeros(0, dtype=np.int64), *born])
    for j, (lane_, p) in enumerate(zip(lanes, parents)):
        lane_.population = np.concatenate([p, stored[by_lane == j]])
        lane_.rate = rate[j]


def _first_new(tagged: np.ndarray, at: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Of rows `at`, the first of each tagged key that is not in `taken`, in order."""
    _, first = np.unique(tagged[at], return_index=True)
    at = at[np.sort(first)]
    return at[~np.isin(tagged[at], taken)]


def _tagged(keys: np.ndarray, lane: np.ndarray | int) -> np.ndarray:
    """Arch keys made distinct per lane (a lane's own key space), for one de-duplication over every lane."""
    return keys ^ (np.asarray(lane, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _repair(ev: _Evaluator, rows: np.ndarray, maxima: np.ndarray, smallest: np.ndarray, steps: int,
            rng: Draws) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`rows` (changed in place) with each one over its maxima (a column of `maxima` per row) moved, up to `steps`
    times, one choice toward `smallest` (the space's smallest arch's row) at a random active gene where they
    differ; the rows, their
    limit values [limits, n] and which meet their maxima. A child that a few smaller choices bring under its budget
    stays near the limit, where the best archs lie."""
    _, values = ev.check(rows)
    matrix = _values(ev, values)
    ok = (matrix <= maxima).all(axis=0)
    for _ in range(steps):
        bad = np.flatnonzero(~ok)
        movable = (rows[bad] != smallest) & ev.genome.active(rows[bad])
        bad, movable = bad[movable.any(axis=1)], movable[movable.any(axis=1)]
        if not len(bad):
            break
        column = np.argmax(rng.random(movable.shape) * movable, axis=1)
        rows[bad, column] += np.sign(smallest[column] - rows[bad, column])
        _, values = ev.check(rows[bad])
        matrix[:, bad] = _values(ev, values)
        ok[bad] = (matrix[:, bad] <= maxima[:, bad]).all(axis=0)
    return rows, matrix, ok


def _chunked(score: ScoreFn, size: int) -> ScoreFn:
    """`score` called on at most `size` rows at a time (a tree ensemble walks a few thousand rows at once about
    twice as slowly per row as a hundred; a small MLP is as fast either way)."""
    def run(rows: np.ndarray) -> np.ndarray:
        if len(rows) <= size:
            return score(rows)
        return np.concatenate([score(rows[i : i + size]) for i in range(0, len(rows), size)])
    return run


def arch_files(budgets: Sequence[float]) -> list[str]:
    """The file names of the budgets' archs: arch-25ms.json, arch-22.5ms.json (6 significant digits); budgets that
    would share a name are a ConfigError (`check_budgets`)."""
    check_budgets(budgets)
    return [_arch_file(b) for b in budgets]


def _arch_file(budget: float) -> str:
    return f"arch-{budget:g}ms.json"


_ARCH_FILE = re.compile(r"arch-[0-9][0-9.e+-]*ms\.json")


def is_arch_file(name: str) -> bool:
    """Whether `name` is one of the names `arch_files` gives."""
    return _ARCH_FILE.fullmatch(name) is not None


def check_budgets(budgets: Sequence[float], text: str | None = None) -> None:
    """A ConfigError for budgets that repeat a value (equal to 1e-9 relative: 0.7ms and 700us are one budget) or
    that would share an arch file name (equal to 6 significant digits, `arch_files`); `text`: what the user wrote."""
    given = repr(text) if text is not None else ", ".join(f"{b:.12g}" for b in budgets)
    named: dict[str, float] = {}
    for i, b in enumerate(budgets):
        if any(abs(a - b) <= 1e-9 * max(abs(a), abs(b)) for a in budgets[:i]):
            if text is not None:
                raise ConfigError(f"latency budgets {given} repeat a value; give each once")
            raise ConfigError(f"latency budgets must differ, got {given}")
        name = _arch_file(b)
        if name in named:
            raise ConfigError(f"latency budgets {given}: {named[name]:.12g} and {b:.12g} ms would both be written "
                              f"to {name}; give budgets that differ within 6 significant digits")
        named[name] = b


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
        budgets = tuple(float(round(b, 6)) for b in np.linspace(low, high, int(count)))
        check_budgets(budgets, text)
        return budgets
    budgets = tuple(parse_latency_ms(part) for part in text.split(","))
    check_budgets(budgets, text)
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

"""Evolutionary searches over a space, held as NumPy rows of choice indices (Cai et al., "Once-for-All" (evolution
with constraint-aware sampling); Real et al., "Regularized Evolution", AAAI 2019 (aging evolution)).

A population is an array of genome rows (`ofakit.space.genome`); mutation, crossover, the limits and the score run on
whole batches, and archs are built only for the result. Children are proposed in batches sized by how many of the
last ones met the limits and were new, then checked at once; only the ones kept are scored, each distinct arch once.
A limit no subnet can meet is an `InfeasibleError` that names the smallest value reached, never an endless loop.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.rng import Draws
from ofakit.search.constraints import InfeasibleError, Limit, RowFn, feasible
from ofakit.space.genome import Genome

ScoreFn = RowFn  # genome rows -> predicted accuracy, one per row


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 100  # the first population, and the children bred per generation (as MIT's population_size)
    generations: int = 500
    parents: float = 0.25  # share of `population` kept as parents (the best of parents + children)
    mutation_share: float = 0.5  # share of the children made by mutation (the rest by crossover)
    mutation_prob: float = 0.1  # per-gene probability of a redraw in a mutation
    sample_tries: int = 200  # batches of proposals per generation (and for the first population) before giving up
    restart_after: int = 8  # evolution: generations without a better best before the population starts again
    # from fresh random feasible archs (0: never); the best arch found stays the pick
    first_draws: float = 2.0  # evolution: its first population (and each restart's) is the best `population` of
    # this many times `population` random feasible archs


@dataclass
class SearchResult:
    best: ArchConfig
    score: float
    costs: dict[str, float]  # each limit's value for `best`
    evaluations: int  # distinct feasible archs scored
    wall_time_s: float
    history: list[float] = field(default_factory=list)  # best score per generation
    genome: Genome | None = None
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))  # every arch scored
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their scores
    # the anytime record: after each batch scored, [archs scored, best feasible score, seconds since the search began]
    anytime: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def archs(self, index: Sequence[int] | np.ndarray | None = None) -> list[ArchConfig]:
        """The scored archs (all, or those at `index`), built from their rows."""
        assert self.genome is not None
        return self.genome.decode(self.rows if index is None else self.rows[np.asarray(index, dtype=np.int64)])


class _Evaluator:
    """Checks limits on batches of rows and scores each distinct feasible arch once, in one call per batch.

    The scored rows, their keys, scores and limit values live in growing arrays; a row's store index is what the
    searches pass around.
    """

    def __init__(self, genome: Genome, score: ScoreFn, limits: Sequence[Limit]) -> None:
        self.genome, self.score, self.limits = genome, score, list(limits)
        self.index: dict[int, int] = {}  # key -> store index
        self.n = 0
        self.scored = 0  # rows [0, scored) have their scores
        self.rows = np.zeros((256, genome.width), dtype=np.int64)
        self.keys = np.zeros(256, dtype=np.uint64)
        self.scores = np.zeros(256)
        self.costs = {lim.name: np.zeros(256) for lim in self.limits}
        self.lowest = {lim.name: np.inf for lim in self.limits}  # smallest value seen, for the infeasible error
        self.started, self.best = time.perf_counter(), -np.inf
        self.anytime: list[tuple[float, float, float]] = []  # see SearchResult.anytime

    def check(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        mask, values = feasible(self.limits, rows)
        for name, v in values.items():
            if v.size:
                self.lowest[name] = min(self.lowest[name], float(v.min()))
        return mask, values

    def add(self, rows: np.ndarray, values: dict[str, np.ndarray], keys: np.ndarray | None = None, *,
            later: bool = False) -> np.ndarray:
        """Store indices of `rows` (all feasible, with their limit values; `keys`: theirs, if known); new archs
        are scored now, or with `later` at the next `score_new`."""
        keys = self.genome.keys(rows) if keys is None else keys
        out = np.empty(len(rows), dtype=np.int64)
        new = []
        for i, k in enumerate(keys.tolist()):
            j = self.index.get(k)
            if j is None:
                j = self.index[k] = self.n + len(new)
                new.append(i)
            out[i] = j
        if new:
            sel, lo, hi = np.asarray(new), self.n, self.n + len(new)
            self._reserve(hi)
            self.rows[lo:hi], self.keys[lo:hi] = rows[sel], keys[sel]
            for name, v in values.items():
                self.costs[name][lo:hi] = v[sel]
            self.n = hi
        if not later:
            self.score_new()
        return out

    def score_new(self) -> None:
        """Score the archs stored since the last call, in one batch."""
        if self.n > self.scored:
            self.scores[self.scored : self.n] = self.score(self.rows[self.scored : self.n])
            self.best = max(self.best, float(self.scores[self.scored : self.n].max()))
            self.scored = self.n
            self.anytime.append((self.n, self.best, time.perf_counter() - self.started))

    def top(self, index: np.ndarray, n: int) -> np.ndarray:
        """The `n` best-scored of the store indices `index`, best first (ties in the given order)."""
        return index[np.argsort(-self.scores[index], kind="stable")[:n]]

    def add_feasible(self, rows: np.ndarray) -> np.ndarray:
        """Check `rows` and store the feasible ones; their store indices."""
        mask, values = self.check(rows)
        return self.add(rows[mask], {k: v[mask] for k, v in values.items()})

    def _reserve(self, size: int) -> None:
        if size <= len(self.scores):
            return
        grow = max(size, 2 * len(self.scores))
        pad = grow - len(self.scores)
        self.rows = np.concatenate([self.rows, np.zeros((pad, self.genome.width), dtype=np.int64)])
        self.keys = np.concatenate([self.keys, np.zeros(pad, dtype=np.uint64)])
        self.scores = np.concatenate([self.scores, np.zeros(pad)])
        self.costs = {k: np.concatenate([v, np.zeros(pad)]) for k, v in self.costs.items()}


def _pick(ev: _Evaluator, rows: np.ndarray, want: int, taken: set[int]) -> tuple[np.ndarray, int]:
    """Store indices of the first `want` rows that meet the limits and are not in `taken` (which grows), and how
    many such rows the batch held in all (to size the next batch)."""
    picked, hits = _pick_parts(ev, rows, [len(rows)], np.array([want]), taken)
    return picked[0], int(hits[0])


def _pick_parts(ev: _Evaluator, rows: np.ndarray, sizes: Sequence[int], want: np.ndarray, taken: set[int],
                later: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """`_pick` on consecutive parts of `rows` (part i: `sizes[i]` rows, up to `want[i]` picked), each part seeing
    the keys the earlier ones took; the limits and keys of all parts are computed in one call each, and the new
    archs scored in one (with `later`: at the evaluator's next `score_new`)."""
    mask, values = ev.check(rows)
    keys = ev.genome.keys(rows)
    chosen: list[list[int]] = []
    hits, start = np.zeros(len(sizes), dtype=np.int64), 0
    for part, size in enumerate(sizes):
        span = np.flatnonzero(mask[start : start + size]) + start
        start += size
        got: list[int] = []
        for i, k in zip(span.tolist(), keys[span].tolist()):
            if k in taken:
                continue
            hits[part] += 1
            if len(got) < want[part]:
                taken.add(k)
                got.append(i)
        chosen.append(got)
    at = np.array([i for got in chosen for i in got], dtype=np.int64)
    stored = ev.add(rows[at], {k: v[at] for k, v in values.items()}, keys[at], later=later)
    return np.split(stored, np.cumsum([len(c) for c in chosen])[:-1]), hits


def _infeasible(ev: _Evaluator) -> InfeasibleError:
    space = ev.genome.space
    ev.check(ev.genome.encode([space.smallest()]))  # counts in `lowest`
    parts = []
    for lim in ev.limits:
        if ev.lowest[lim.name] > lim.maximum:
            limit, reached = _fmt_apart(lim.maximum, ev.lowest[lim.name])
            parts.append(f"{lim.name} <= {limit}{lim.unit} (smallest reached: {reached}{lim.unit})")
    detail = "; ".join(parts) or ", ".join(f"{lim.name} <= {_fmt(lim.maximum)}" for lim in ev.limits)
    return InfeasibleError(f"no subnet of space {space.name!r} meets the limits together: {detail}; "
                           "raise the limit")


def _fmt(value: float, decimals: int = 2) -> str:
    return f"{value / 1e6:.{decimals}f}M" if abs(value) >= 1e6 else f"{value:.{decimals}f}"


def _fmt_apart(limit: float, reached: float) -> tuple[str, str]:
    """`limit` and `reached` (above it) with 2 decimals, or as many more as it takes to tell them apart (a smallest
    value of 0.2004 against a limit of 0.2 reads 0.2000 and 0.2004, not 0.20 twice)."""
    for decimals in range(2, 16):
        a, b = _fmt(limit, decimals), _fmt(reached, decimals)
        if a != b:
            break
    return a, b


def _first_population(ev: _Evaluator, n: int, rng: Draws,
                      tries: int) -> np.ndarray:
    """n distinct feasible archs by rejection sampling (batches of 4n draws); InfeasibleError if none is found."""
    found: list[np.ndarray] = []
    taken: set[int] = set()
    for _ in range(tries):
        picked, _ = _pick(ev, ev.genome.sample(4 * n, rng), n - sum(map(len, found)), taken)
        found.append(picked)
        if sum(map(len, found)) >= n:
            break
    if not any(len(f) for f in found):
        smallest = ev.add_feasible(ev.genome.encode([ev.genome.space.smallest()]))
        if not len(smallest):
            raise _infeasible(ev)
        return smallest
    return np.concatenate(found)


def _result(ev: _Evaluator, started: float, history: list[float]) -> SearchResult:
    scores = ev.scores[: ev.n]
    best = int(np.argmax(scores))
    return SearchResult(ev.genome.decode(ev.rows[best : best + 1])[0], float(scores[best]),
                        {k: float(v[best]) for k, v in ev.costs.items()}, ev.n, time.perf_counter() - started,
                        history, ev.genome, ev.rows[: ev.n].copy(), scores.copy(),
                        np.array(ev.anytime, dtype=np.float64).reshape(-1, 3))


def evolve(genome: Genome, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig,
           rng: Draws) -> SearchResult:
    """OFA-style evolution, generation by generation as MIT's `EvolutionFinder`: the best `parents` of the population
    stay, and `population` children join them (`mutation_share` mutants of one parent, the rest crossovers of two);
    unlike MIT's, the children of a generation are feasible and distinct from each other and from the parents.

    When the population's best has not risen for `restart_after` generations, the population starts again from fresh
    random feasible archs (a restart, as restart GAs and IPOP-CMA-ES do): every arch scored stays in the store, so the
    pick is the best of all runs. The old best is not carried into the new population: it would lead the parents
    back into the basin that stalled (on MIT's tutorial predictor at Note10 25 ms, restarting after 10, seed 4
    stayed at 0.0606 with it kept, below MIT's 0.0648, and reached 0.0767 without it). Restart after 8 stalled
    generations was the best of 3, 5, 8, 10, 15, 20 on that bench's 5 seeds (`bench/search_speed.py`); with the first
    draws below, 5 and 12 were no better over seeds 100-159.

    The first population, and each restart's, is the best half of twice as many random feasible archs
    (`first_draws`): the parents start higher, and a restarted run climbs back sooner. On the same bench's predictor
    and limit, over seeds 160-259 (chosen on 100-159), the archs scored until the best reached 0.0665 fell from
    3,823 / 4,427 to 2,522 / 3,921 at the 80th / 90th percentile, the median unchanged (2,072 / 2,050).

    `score` and the limits' costs take rows of `genome`.
    """
    started = time.perf_counter()
    if not 0 < cfg.parents <= 1 or not 0 <= cfg.mutation_share <= 1 or cfg.first_draws < 1:
        raise ConfigError(f"parents ({cfg.parents}) must be in (0, 1] and mutation_share ({cfg.mutation_share}) in "
                          f"[0, 1]: shares of the population; first_draws ({cfg.first_draws}) at least 1")
    ev = _Evaluator(genome, score, limits)

    def first_population() -> np.ndarray:
        drawn = _first_population(ev, int(round(cfg.first_draws * cfg.population)), rng, cfg.sample_tries)
        return ev.top(drawn, cfg.population)

    population = first_population()
    n_parents = max(2, int(round(cfg.parents * cfg.population)))
    quota = {"mutate": int(round(cfg.mutation_share * cfg.population))}
    quota["cross"] = max(0, cfg.population - quota["mutate"])
    rate = {"mutate": 1.0, "cross": 1.0}  # share of the last batch that was feasible and new
    history, stalled, top = [], 0, -np.inf  # top: the best of the population since its last restart
    for _ in range(cfg.generations):
        parents = ev.top(population, n_parents)
        stalled, top = (stalled + 1, top) if ev.scores[parents[0]] <= top else (0, float(ev.scores[parents[0]]))
        if cfg.restart_after and stalled >= cfg.restart_after:  # stuck: start again from fresh random archs
            population, stalled = first_population(), 0
            parents = ev.top(population, n_parents)
            top = float(ev.scores[parents[0]])
        history.append(max(top, history[-1]) if history else top)  # the best so far (the store keeps it)
        pool = ev.rows[parents]
        taken = set(ev.keys[parents].tolist())
        children, need, idle = [parents], dict(quota), 0
        for _ in range(cfg.sample_tries):
            if sum(need.values()) <= 0 or idle >= 3:
                break
            idle += 1
            kinds = [kind for kind in ("mutate", "cross") if need[kind] > 0]
            sizes = [min(20 * cfg.population, int(np.ceil(1.2 * need[k] / max(rate[k], 0.02))) + 1) for k in kinds]
            batches = []
            for kind, n in zip(kinds, sizes):
                if kind == "mutate":
                    batches.append(genome.mutate(pool[rng.integers(len(pool), size=n)], rng, cfg.mutation_prob))
                else:
                    batches.append(genome.crossover(pool[rng.integers(len(pool), size=n)],
                                                    pool[rng.integers(len(pool), size=n)], rng))
            picked, hits = _pick_parts(ev, np.concatenate(batches), sizes, np.array([need[k] for k in kinds]), taken,
                                       later=True)
            for kind, n, got, hit in zip(kinds, sizes, picked, hits.tolist()):
                rate[kind] = 0.5 * rate[kind] + 0.5 * hit / n
                if len(got):
                    children.append(got)
                    need[kind] -= len(got)
                    idle = 0
        ev.score_new()  # a generation's new archs in one batch
        population = np.concatenate(children)
    return _result(ev, started, history)


def aging_evolution(genome: Genome, score: ScoreFn, limits: Sequence[Limit], cfg: EvolutionConfig,
                    rng: Draws, sample_size: int = 25) -> SearchResult:
    """Regularized evolution: tournament of `sample_size`, mutate the winner, the oldest member dies.

    Children are made and checked a population-sized batch at a time (one tournament per child), which keeps the
    calls to the predictors vectorized; `generations` counts batches.
    """
    started = time.perf_counter()
    ev = _Evaluator(genome, score, limits)
    queue = _first_population(ev, cfg.population, rng, cfg.sample_tries)
    history = []
    for _ in range(cfg.generations):
        k = min(sample_size, len(queue))
        contenders = queue[np.argsort(rng.random((cfg.population, len(queue))), axis=1)[:, :k]]
        winners = contenders[np.arange(cfg.population), np.argmax(ev.scores[contenders], axis=1)]
        born = ev.add_feasible(genome.mutate(ev.rows[winners], rng, cfg.mutation_prob))
        queue = np.concatenate([queue, born])[-cfg.population:]
        history.append(float(ev.scores[: ev.n].max()))
    return _result(ev, started, history)


def random_search(genome: Genome, score: ScoreFn, limits: Sequence[Limit], budget: int,
                  rng: Draws, *, chunk: int = 500) -> SearchResult:
    """The baseline: `budget` random archs, the best feasible one wins (drawn and scored `chunk` at a time, for
    the anytime record: the same draws as one batch)."""
    started = time.perf_counter()
    ev = _Evaluator(genome, score, limits)
    for size in np.diff(np.r_[np.arange(0, budget, chunk), budget]):
        ev.add_feasible(genome.sample(int(size), rng))
    if not ev.n:
        raise _infeasible(ev)
    return _result(ev, started, [])

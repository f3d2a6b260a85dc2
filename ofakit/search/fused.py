"""The breeding half of `evolve`'s generations compiled with Numba, for MBConv spaces under limits that are block
sums (LUT latency, MACs, params: `ofakit.space.additive.Additive`), the common case.

A generation is: pick the parents, then, until the quotas are met, draw mutants and crossovers, find their keys and
limit values, keep the feasible ones new to the generation, and store the archs never seen before. One compiled call
does all of that; the caller then scores the new archs with its own predictor (NumPy, BLAS) and goes on. Nothing
about the search changes: the kernel makes the same random draws in the same order as the NumPy loop (Numba's
`np.random.Generator` methods follow NumPy's), sums the tables in NumPy's order and picks by the same rules, so a
seed gives the same result with or without Numba (tests/search/test_fused.py). What it saves is the interpreter:
otherwise a generation is ~25 small NumPy calls and two Python loops, most of the time of a 500-generation search.

Opt in with `EvolutionConfig(engine="numba")` (`ofakit specialize --engine numba`; Numba: `pip install
'ofakit[fast]'`). It is not the default because a fresh process spends ~0.5 s importing Numba and loading the
compiled code from Numba's cache (the very first run compiles, ~15 s): it pays off in long searches and in processes
that search more than once, not in one `specialize` of 50 generations.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofakit.errors import ConfigError
from ofakit.space.genome import Genome

ENGINES = ("numpy", "numba")


@dataclass
class Plan:
    """The constant arrays of the kernel (see `plan`)."""

    genome: tuple  # gating genes, their mixed radix, active mask per code, key hashes, gene sizes, resolution column,
    # kernel and expand columns, kernel and expand choice counts
    limits: tuple  # fixed [limit, resolution], flat blocks [limit, ...] (a zero last), scale, offset, maximum


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def plan(genome: Genome, limits: Sequence[Any], engine: str = "numpy") -> Plan | None:
    """The kernel's arrays for engine "numba" (None for "numpy": the NumPy loop runs). ConfigError for another
    engine, or, saying why, for a problem the kernel cannot run."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown search engine {engine!r}; choices: {', '.join(ENGINES)}")
    if engine == "numpy":
        return None
    why = _unfit(genome, limits)
    if why is None and not numba_available():
        why = "Numba is not installed (pip install 'ofakit[fast]')"
    if why is not None:
        raise ConfigError(f"the compiled search (engine 'numba') cannot run this problem: {why}; use engine 'numpy'")
    gates, radix, active = genome.gate_code
    tables = [lim.additive.block_sum.row_tables(genome) for lim in limits]
    spec = genome.space.spec
    return Plan((gates, radix, active, genome.key_weights, genome.sizes, int(genome.columns["resolution"][0]),
                 genome.columns["kernel_sizes"], genome.columns["expand_ratios"], len(spec.kernel_choices),
                 len(spec.expand_choices)),
                (np.stack([f for f, _ in tables]), np.stack([t for _, t in tables]),
                 np.array([lim.additive.scale for lim in limits], dtype=np.float64),
                 np.array([lim.additive.offset for lim in limits], dtype=np.float64),
                 np.array([lim.maximum for lim in limits], dtype=np.float64)))


def _unfit(genome: Genome, limits: Sequence[Any]) -> str | None:
    """Why the kernel cannot run this problem, or None."""
    from ofakit.space.mbconv import MBConvSpace

    if not isinstance(genome.space, MBConvSpace) or genome.gate_code is None:
        return f"space {genome.space.name!r} is not an MBConv space"
    if not limits:
        return "it has no limit"
    other = [lim.name for lim in limits if lim.additive is None]
    if other:
        return (f"limit {', '.join(other)} is not a sum over layers (the LUT sum, MACs or params; a learned latency "
                "predictor is not: --latency-model lut)")
    resolutions = [int(r) for r in genome.genes[int(genome.columns["resolution"][0])].choices]
    if not all(lim.additive.block_sum.complete(resolutions) for lim in limits):
        return "a latency table misses layers of this space"
    return None


class Breeder:
    """Runs generations on a search's store: `rows` [n, genes], `keys`, `scores` and `costs` [n, limits] of the archs
    scored so far (it keeps growing copies; read them back from its attributes).

    `generation(population)` picks the parents, stores the new children and returns the next population, parents
    first; the new children's scores (rows `n_before:n`) are the caller's to fill in before the next call.
    """

    def __init__(self, p: Plan, rng: np.random.Generator, rows: np.ndarray, keys: np.ndarray, scores: np.ndarray,
                 costs: np.ndarray, population_size: int, n_parents: int, quota: tuple[int, int],
                 mutation_prob: float, sample_tries: int) -> None:
        self.plan, self.rng, self.n = p, rng, len(rows)
        self.rows, self.keys, self.scores, self.costs = rows, keys, scores, costs
        self._grow(max(4096, 2 * self.n))  # copies the store, and indexes its keys in `table`
        self.rate = np.ones(2)
        self.settings = (population_size, n_parents, quota[0], quota[1], float(mutation_prob), sample_tries)

    def generation(self, population: np.ndarray) -> np.ndarray:
        if self.n + self.settings[0] > len(self.keys):  # a generation adds fewer archs than a population
            self._grow(2 * len(self.keys))
        children, self.n = _generation(self.rng, population, self.n, self.rows, self.keys, self.scores, self.costs,
                                       self.table, self.rate, self.plan.genome, self.plan.limits, self.settings)
        return children

    def _grow(self, size: int) -> None:
        """Room for `size` archs, and a key index at most half full."""
        def grown(a: np.ndarray) -> np.ndarray:
            out = np.zeros((size, *a.shape[1:]), dtype=a.dtype)
            out[: self.n] = a[: self.n]
            return out

        self.rows, self.keys, self.scores, self.costs = map(grown, (self.rows, self.keys, self.scores, self.costs))
        slots = 1 << (2 * size - 1).bit_length()
        self.table = (np.zeros(slots, dtype=np.bool_), np.zeros(slots, dtype=np.uint64),
                      np.zeros(slots, dtype=np.int64))
        _index_all(self.table, self.keys[: self.n])


# -- the kernel (compiled on first use, cached on disk by Numba) ---------------------------------------------------
def _jit(fn):
    try:
        from numba import njit
    except ImportError:  # the module imports without Numba; `plan` never hands work here then
        return fn
    return njit(cache=True)(fn)


@_jit
def _slot(table, key):
    """The table slot of `key`: where it is, or the empty one where it would go."""
    used, keys, _ = table
    mask = used.shape[0] - 1
    at = np.int64((key ^ (key >> np.uint64(29))) & np.uint64(mask))
    while used[at] and keys[at] != key:
        at = (at + 1) & mask
    return at


@_jit
def _index_all(table, keys):
    used, table_keys, values = table
    for i in range(keys.shape[0]):
        at = _slot(table, keys[i])
        used[at], table_keys[at], values[at] = True, keys[i], i


@_jit
def _pairwise_sum(a):
    """Sum of a short float64 vector in NumPy's order (its pairwise sum below 128 elements: eight running sums)."""
    n = a.shape[0]
    if n < 8:
        s = 0.0
        for i in range(n):
            s += a[i]
        return s
    r = a[:8].copy()
    i = 8
    while i < n - n % 8:
        for k in range(8):
            r[k] += a[i + k]
        i += 8
    s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        s += a[i]
        i += 1
    return s


@_jit
def _assess(batch, genome, limits):
    """Keys, limit values and feasibility of rows (as Genome.keys and BlockSum.of_rows compute them)."""
    gates, radix, active_of, hashes, _, res_col, k_cols, e_cols, n_k, n_e = genome
    fixed, flat, scales, shifts, maxima = limits
    m, width = batch.shape
    n_lim, slots = fixed.shape[0], k_cols.shape[0]
    keys = np.zeros(m, dtype=np.uint64)
    values = np.empty((m, n_lim))
    ok = np.ones(m, dtype=np.bool_)
    per_slot = np.empty(slots)
    zero = flat.shape[1] - 1
    for i in range(m):
        code = 0
        for g in range(gates.shape[0]):
            code += batch[i, gates[g]] * radix[g]
        active = active_of[code]
        h = np.uint64(0)
        for j in range(width):
            if active[j]:
                h += np.uint64(batch[i, j]) * hashes[j]
        keys[i] = h
        res = batch[i, res_col]
        for lim in range(n_lim):
            for s in range(slots):
                at = zero
                if active[k_cols[s]]:
                    at = ((res * slots + s) * n_k + batch[i, k_cols[s]]) * n_e + batch[i, e_cols[s]]
                per_slot[s] = flat[lim, at]
            v = scales[lim] * ((fixed[lim, res] + _pairwise_sum(per_slot)) + shifts[lim])
            values[i, lim] = v
            if not v <= maxima[lim]:
                ok[i] = False
    return keys, values, ok


@_jit
def _breed(rng, pool, size, genome, mutation_prob):
    """size[0] mutants then size[1] crossovers of `pool`, drawn as Genome.mutate and Genome.crossover draw."""
    sizes = genome[4]
    n_pool, width = pool.shape
    batch = np.empty((size[0] + size[1], width), dtype=np.int64)
    if size[0] > 0:  # parents, then which genes redraw, then the redrawn values in row order
        pick = rng.integers(0, n_pool, size=size[0])
        redraw = rng.random((size[0], width)) < mutation_prob
        fresh = rng.random(np.count_nonzero(redraw))
        k = 0
        for i in range(size[0]):
            for j in range(width):
                if redraw[i, j]:
                    batch[i, j] = np.int64(fresh[k] * sizes[j])
                    k += 1
                else:
                    batch[i, j] = pool[pick[i], j]
    if size[1] > 0:  # two parents, then a coin per gene
        a = rng.integers(0, n_pool, size=size[1])
        b = rng.integers(0, n_pool, size=size[1])
        coin = rng.random((size[1], width))
        for i in range(size[1]):
            for j in range(width):
                batch[size[0] + i, j] = pool[a[i], j] if coin[i, j] < 0.5 else pool[b[i], j]
    return batch


@_jit
def _generation(rng, population, n, rows, keys, scores, costs, table, rate, genome, limits, settings):
    population_size, n_parents, quota_mutate, quota_cross, mutation_prob, sample_tries = settings
    order = np.argsort(-scores[population], kind="mergesort")
    parents = population[order[:n_parents]]
    pool = rows[parents]
    taken = set()
    for p in parents:
        taken.add(keys[p])
    children = np.empty(n_parents + quota_mutate + quota_cross, dtype=np.int64)
    children[:n_parents] = parents
    n_children = n_parents
    need = np.array([quota_mutate, quota_cross])
    size = np.zeros(2, dtype=np.int64)
    got = np.zeros(2, dtype=np.int64)
    idle = 0
    for _ in range(sample_tries):
        if need[0] + need[1] <= 0 or idle >= 3:
            break
        idle += 1
        for kind in range(2):
            size[kind] = 0
            if need[kind] > 0:
                size[kind] = min(20 * population_size, int(np.ceil(1.2 * need[kind] / max(rate[kind], 0.02))) + 1)
        batch = _breed(rng, pool, size, genome, mutation_prob)
        batch_keys, values, ok = _assess(batch, genome, limits)
        start = 0
        for kind in range(2):
            hits, got[kind] = 0, 0
            for i in range(start, start + size[kind]):
                if not ok[i] or batch_keys[i] in taken:
                    continue
                hits += 1
                if got[kind] < need[kind]:
                    taken.add(batch_keys[i])
                    got[kind] += 1
                    at = _slot(table, batch_keys[i])
                    if not table[0][at]:  # never seen: store it (the caller scores it)
                        table[0][at], table[1][at], table[2][at] = True, batch_keys[i], n
                        rows[n], keys[n], costs[n] = batch[i], batch_keys[i], values[i]
                        n += 1
                    children[n_children] = table[2][at]
                    n_children += 1
            start += size[kind]
            if size[kind] > 0:
                rate[kind] = 0.5 * rate[kind] + 0.5 * hits / size[kind]
        for kind in range(2):
            if got[kind] > 0:
                need[kind] -= got[kind]
                idle = 0
    return children[:n_children].copy(), n

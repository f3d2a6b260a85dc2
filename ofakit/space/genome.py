"""A space's archs as rows of choice indices, so that a search can hold, mutate and de-duplicate whole populations
in NumPy and build `ArchConfig` values only at its edges.

Column j of a row is the index into `space.genes()[j].choices`. A gene whose slot the arch's depth skips still holds
a value (mutation may revive it), but it is *inactive*: `canonical` zeroes it, so two rows that build the same network
have the same canonical row and the same `keys` value (a 64-bit hash) — the de-duplication that ArchConfig's
equality gives one arch at a time.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError
from ofakit.rng import Draws, Stream
from ofakit.space.base import SearchSpace

FIELDS = ("depths", "kernel_sizes", "expand_ratios", "width_mults")


class Genome:
    """Convert between archs and rows, and draw, mutate and cross rows over, vectorized.

    Args:
        space: the space; its `resolutions` (possibly restricted, see `predictor_space`) are the resolution gene's
            choices.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.genes = space.genes()
        self.sizes = np.array([len(g.choices) for g in self.genes], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])  # of each gene in the one-hot layout
        self.columns = {f: np.array([j for j, g in enumerate(self.genes) if g.field == f], dtype=np.int64)
                        for f in ("resolution", *FIELDS)}
        self._numeric = np.full((len(self.genes), int(self.sizes.max())), np.nan)
        for j, gene in enumerate(self.genes):
            self._numeric[j, : len(gene.choices)] = [float(v) for v in gene.choices]
        self._gated = np.array([j for j, g in enumerate(self.genes) if g.gate >= 0], dtype=np.int64)
        self._gate = np.array([self.genes[j].gate for j in self._gated], dtype=np.int64)
        self._threshold = np.array([self.genes[j].threshold for j in self._gated], dtype=np.float64)
        self._index = [{v: i for i, v in enumerate(g.choices)} for g in self.genes]
        self._choices = np.empty(int(self.sizes.sum()), dtype=object)  # every gene's own values, one-hot order
        self._choices[:] = [v for g in self.genes for v in g.choices]
        # key = canonical row . key_weights (mod 2^64); gate_code: see _active_table
        self.key_weights = Stream(0x0FA).bits(len(self.genes)) | np.uint64(1)
        self.gate_code = self._active_table()

    @property
    def width(self) -> int:
        return len(self.genes)

    # -- archs <-> rows ---------------------------------------------------------------------------------------
    def encode(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Rows (int64) of `archs`; a skipped slot's value outside the choices becomes index 0.

        Raises ArchError for an arch of another space or an illegal value that the network uses.
        """
        rows = np.zeros((len(archs), self.width), dtype=np.int64)
        for i, arch in enumerate(archs):
            if arch.space != self.space.name:
                self.space.validate(arch)  # raises naming both spaces
            values = [arch.resolution] + [getattr(arch, g.field)[g.index] if g.index < len(getattr(arch, g.field))
                                          else None for g in self.genes[1:]]
            for j, value in enumerate(values):
                rows[i, j] = self._index[j].get(value, -1)
            if (rows[i] < 0).any():
                bad = self.active(rows[i : i + 1])[0] & (rows[i] < 0)
                if bad.any():
                    self.space.validate(arch)  # names the illegal value and where
                    gene = self.genes[int(np.flatnonzero(bad)[0])]
                    raise ArchError(f"{gene.field}[{gene.index}] = {values[int(np.flatnonzero(bad)[0])]!r} is not "
                                    f"a choice of space {self.space.name!r} here ({', '.join(map(str, gene.choices))})")
                rows[i, rows[i] < 0] = 0
        return rows

    def decode(self, rows: np.ndarray) -> list[ArchConfig]:
        """The archs of `rows` (values taken from the space's own choices, so no checks are repeated)."""
        values = self._choices[np.asarray(rows, dtype=np.int64) + self.offsets]  # the choices themselves, [n, width]
        res = values[:, self.columns["resolution"][0]].tolist()
        parts = [map(tuple, values[:, self.columns[f]].tolist()) for f in FIELDS]
        return [ArchConfig.trusted(self.space.name, r, *fields) for r, *fields in zip(res, *parts)]

    # -- facts of rows ----------------------------------------------------------------------------------------
    def values(self, rows: np.ndarray, field: str) -> np.ndarray:
        """The numeric values of one field, float64 [n, len(field)] (the resolution: [n, 1])."""
        cols = self.columns[field]
        return self._numeric[cols[None, :], rows[:, cols]]

    def active(self, rows: np.ndarray) -> np.ndarray:
        """Bool [n, width]: which genes shape the network (the others sit in slots that depth skips)."""
        if self.gate_code is not None:  # one gather: the mask of every combination of the gating genes' choices
            gates, radix, table = self.gate_code
            return table[rows[:, gates] @ radix]
        return self._active_slow(rows)

    def _active_slow(self, rows: np.ndarray) -> np.ndarray:
        mask = np.ones(rows.shape, dtype=bool)
        if self._gated.size:
            depth = self._numeric[self._gate[None, :], rows[:, self._gate]]
            mask[:, self._gated] = depth > self._threshold
        return mask

    def _active_table(self, most: int = 1 << 16) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(gating genes, their mixed radix, mask per code) when the gating genes have at most `most` joint
        choices; else None (`active` then compares values)."""
        gates = np.array(sorted(set(self._gate.tolist())), dtype=np.int64)  # (np.unique would import numpy.ma)
        if not gates.size or int(np.prod(self.sizes[gates].astype(float))) > most:
            return None
        radix = np.concatenate([[1], np.cumprod(self.sizes[gates])[:-1]]).astype(np.int64)
        codes = np.arange(int(np.prod(self.sizes[gates])))
        rows = np.zeros((len(codes), self.width), dtype=np.int64)
        rows[:, gates] = (codes[:, None] // radix) % self.sizes[gates]
        return gates, radix, self._active_slow(rows)

    def canonical(self, rows: np.ndarray) -> np.ndarray:
        """Rows with inactive genes set to 0: equal exactly when the networks are equal."""
        return rows * self.active(rows)

    def keys(self, rows: np.ndarray) -> np.ndarray:
        """A 64-bit hash (uint64) of each canonical row, for de-duplication (collisions: about n^2 / 2^64)."""
        return self.canonical(rows).astype(np.uint64) @ self.key_weights

    def onehot(self, rows: np.ndarray) -> np.ndarray:
        """Float32 [n, sum of choices]: a 1 for each active gene's chosen value."""
        n, width = len(rows), int(self.sizes.sum()) + 1  # inactive genes land in a spare last column, dropped
        at = np.where(self.active(rows), rows + self.offsets, width - 1)
        out = np.zeros(n * width, dtype=np.float32)
        out[(at + np.arange(0, n * width, width)[:, None]).ravel()] = 1.0
        return out.reshape(n, width)[:, :-1]

    def linear_map(self, features: Callable[[list[ArchConfig]], np.ndarray], *, seed: int = 0) -> np.ndarray | None:
        """W with `onehot(rows) @ W == features(decode(rows))`, or None when the features are not linear in the
        active choices (then a caller decodes and encodes instead).

        Every one-hot encoding of an arch (ofakit's, MIT's two layouts) is such a map. It is the least-squares
        (minimum-norm) solution on `spanning_rows`, whose one-hot codes span those of every row, checked, to 1e-6,
        on random rows; where that check fails, on random rows and checked again.
        """
        rng = Stream(seed)
        check = self.sample(64, rng)
        want = np.asarray(features(self.decode(check)), dtype=np.float64)
        for fit in (self.spanning_rows(), self.sample(4 * int(self.sizes.sum()) + 64, rng)):
            x = self.onehot(fit).astype(np.float64)
            w = np.linalg.lstsq(x, np.asarray(features(self.decode(fit)), dtype=np.float64), rcond=None)[0]
            err = np.abs(self.onehot(check).astype(np.float64) @ w - want)
            if err.size == 0 or float(err.max()) < 1e-6:
                return w
        return None

    def spanning_rows(self) -> np.ndarray:
        """A base row with every gene active (each gating gene at its largest value), and the base with one gene
        moved to each of its other choices: 1 + sum(sizes - 1) rows.

        Their one-hot codes span the one-hot code of every row when no gating gene is itself gated (as in every
        space's genes): a row's code is the base's, plus, per gating gene, the change of moving it to the row's
        value (which drops the genes it then skips, at their base values), plus, per other active gene, the change
        of moving it to the row's value.
        """
        base = np.zeros(self.width, dtype=np.int64)
        for g in set(self._gate.tolist()):
            base[g] = int(np.nanargmax(self._numeric[g]))
        gene = np.repeat(np.arange(self.width), self.sizes)  # one entry per (gene, choice), one-hot order
        choice = np.arange(len(gene)) - np.repeat(self.offsets, self.sizes)
        moved = np.flatnonzero(choice != base[gene])
        rows = np.tile(base, (1 + len(moved), 1))
        rows[1 + np.arange(len(moved)), gene[moved]] = choice[moved]
        return rows

    # -- variation --------------------------------------------------------------------------------------------
    def sample(self, n: int, rng: Draws) -> np.ndarray:
        """`n` uniformly random rows (every gene drawn independently)."""
        return (rng.random((n, self.width)) * self.sizes).astype(np.int64)

    def mutate(self, rows: np.ndarray, rng: Draws, prob: float) -> np.ndarray:
        """Each gene of each row redrawn with probability `prob` (one uniform per gene, then one per redrawn gene,
        in row order)."""
        r, c = np.nonzero(rng.random(rows.shape) < prob)
        out = rows.copy()
        out[r, c] = (rng.random(len(r)) * self.sizes[c]).astype(np.int64)
        return out

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: Draws) -> np.ndarray:
        """Each gene taken from `a` or `b` with equal probability."""
        return np.where(rng.random(a.shape) < 0.5, a, b)

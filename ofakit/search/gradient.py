"""A differentiable search on the trained supernet, its weights frozen (Liu et al., "DARTS", ICLR 2019; Wu et al.,
"FBNet", CVPR 2019; Wan et al., "FBNetV2", CVPR 2020; Cai et al., "ProxylessNAS", ICLR 2019).

Architecture logits per gene (kernel and expand ratio per block slot, depth per stage) set the choice probabilities.
Each step forwards one subnet drawn from them through the relaxed supernet (`ofakit.supernet.relaxed`) at its one-hot
point, and takes the gradient with respect to the probabilities there (ProxylessNAS's binarized paths, a
straight-through estimate; `sampled=False` forwards the probability-weighted mix instead, as DARTS and FBNetV2). With
frozen weights the mix is a network no subnet is: its cross-entropy favoured other choices than the subnets' own
(on the reference bundle at 0.49 ms the sampled descent's candidates scored ~0.8 points higher by the bundle's
accuracy predictor). Adam descends, on batches of the data's `train` split,

    loss = cross-entropy + lambda x sum over limits of E[cost] / limit,

where E[cost] is the limit's additive form (a latency table's block sum, MACs, params: `Limit.additive`) taken
under the choice probabilities, so it is exact in expectation. A softmax temperature anneals the probabilities
toward one-hot, where the relaxed network is the argmax subnet. lambda follows the argmax subnet by a dual ascent:
after every step it grows while that subnet breaks a limit (checked with the limit's own cost, the estimator every
algorithm uses) and falls while the subnet leaves room, below zero if need be, so that the cost is pulled toward the
limit from both sides (TuNAS's absolute reward, Bender et al., CVPR 2020, does the same with a fixed weight): with
frozen weights the cross-entropy alone rarely asks for the depth a looser limit allows. The resolution is an outer
loop over the space's resolutions at which the smallest subnet meets the limits.

Each resolution leaves a few distinct argmax subnets that met the limits during its last steps (an infeasible final
one is first repaired: the gene change that saves the most cost per unit of logit lost, until it fits) and the
feasible subnets drawn from its final distribution. Each is also grown into the room the limits leave (`_fill`: the
argmax often stops well short of the limit, 0.45 of 0.49 ms). All are scored with the supernet itself
(`ofakit.search.supernet_score`, on a subset of the split), and the best few scored again on the whole split, whose
best is the result: on 1,000 images a top-1 of 70 % has a standard error of ~1.4 points, more than the candidates
differ by. Its `history` holds, per step, the expected cost of the first additive limit over its maximum (the
descent's expected latency).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ofakit.errors import CapabilityError, ConfigError
from ofakit.rng import Draws
from ofakit.search.constraints import Limit, feasible
from ofakit.search.evolution import SearchResult, _Evaluator, _infeasible, _result
from ofakit.search.progress import SearchProgress
from ofakit.space.genome import Genome


STEPS = 400  # descent steps by default (`specialize`'s budget for this search): on the reference bundle 150 left the
# picks 0.5 points lower on average (bench/RESULTS.md, search methods (b))


@dataclass(frozen=True)
class GradientConfig:
    batch_size: int = 32  # train-split images per step
    learning_rate: float = 0.1  # Adam's step on the logits
    temperature: tuple[float, float] = (1.0, 0.1)  # softmax temperature at the first and last step (geometric)
    penalty: float = 0.0  # lambda at the first step
    penalty_rate: float = 0.3  # lambda += rate x clip(worst cost / limit - 1, -1, 1) after each step
    candidates: int = 3  # distinct feasible argmax subnets per resolution scored with the supernet
    samples: int = 6  # and subnets drawn from each resolution's final distribution (the feasible new ones)
    resolutions: int = 4  # at most this many resolutions, evenly spread over the feasible ones
    sampled: bool = True  # each step forwards one subnet drawn from the probabilities (False: their relaxed mix)
    fill: bool = True  # each candidate also grown into the room the limits leave (`_fill`), scored beside it
    finalists: int = 4  # the best this many on the scorer's subset scored again on the whole split, the best wins
    # there (0 or 1: the subset's best)

    def __post_init__(self) -> None:
        for name in ("batch_size", "candidates", "resolutions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gradient search: {name} must be positive, got {getattr(self, name)}")
        if self.finalists < 0:
            raise ConfigError(f"gradient search: finalists must be 0 or more, got {self.finalists}")


def gradient_search(genome: Genome, score: object, limits: Sequence[Limit], rng: Draws,
                    cfg: GradientConfig = GradientConfig(), *, steps: int = STEPS,
                    progress: bool | None = None) -> SearchResult:
    """The best of the argmax subnets the descent ends at, per resolution (see the module docstring).

    Args:
        score: the supernet's score (`SupernetScore`): its supernet, images and scoring are what the search uses.
        steps: descent steps in all, shared evenly by the resolutions.
        rng: seeds the batches' order and torch.
        progress: a bar on stderr (default: as the score's).
    """
    import torch

    from ofakit.search.supernet_score import SupernetScore

    started = time.perf_counter()
    if not isinstance(score, SupernetScore):
        raise ConfigError("--algorithm gradient descends on the supernet: it needs --data DATA and scores its picks "
                          "with the supernet (not with a predictor)")
    space = genome.space
    if space.block_sum(lambda r, layer: 0.0) is None or not hasattr(score.supernet, "blocks"):
        raise CapabilityError(f"space {space.name!r} ({space.family} family) has no relaxed supernet, which "
                              "--algorithm gradient needs (MBConv spaces have one)")
    terms = [lim for lim in limits if lim.additive is not None]
    if not terms:
        raise ConfigError("--algorithm gradient needs a limit with an additive cost (a latency table, --macs or "
                          "--params); this latency model has none: use --latency-model lut")
    ev = _Evaluator(genome, score, limits)
    if steps < 1:
        raise ConfigError(f"the gradient search needs at least one step, got {steps}")
    resolutions = _resolutions(genome, ev, cfg.resolutions)
    per_resolution = max(1, steps // len(resolutions))
    seed = int(rng.integers(2**31))
    bar = SearchProgress(per_resolution * len(resolutions), "gradient search",
                         enabled=score.show_progress if progress is None else progress)
    history: list[float] = []
    try:
        with torch.enable_grad():
            for r in resolutions:
                found, logits, layout = _descend(genome, score, ev, terms, r, per_resolution, cfg, seed, bar,
                                                 history)
                if cfg.fill:
                    found = np.concatenate([found, *(_fill(genome, ev, row[None], logits, layout) for row in found)])
                ev.add(found, _values(ev, found), later=True)
    finally:
        bar.close()
    score.expect(ev.n)
    ev.score_new()
    if cfg.finalists < 2:
        return _result(ev, started, history)
    top = np.argsort(-ev.scores[: ev.n], kind="stable")[: cfg.finalists]
    final = _Evaluator(genome, score.on_whole_split, limits)
    final.add(ev.rows[top], {name: v[top] for name, v in ev.costs.items()})
    return replace(_result(final, started, history), evaluations=ev.n)


def _resolutions(genome: Genome, ev: _Evaluator, most: int) -> list[int]:
    """Indices of the resolution gene whose smallest subnet meets the limits, at most `most` evenly spread."""
    space, col = genome.space, int(genome.columns["resolution"][0])
    smallest = genome.encode([space.smallest()])
    rows = np.repeat(smallest, genome.sizes[col], axis=0)
    rows[:, col] = np.arange(genome.sizes[col])
    mask, _ = ev.check(rows)
    ok = np.flatnonzero(mask)
    if not ok.size:
        raise _infeasible(ev)
    if len(ok) > most:  # evenly spread from the largest down
        ok = ok[np.unique(np.round(np.linspace(len(ok) - 1, 0, most)).astype(int))]
    return [int(i) for i in ok[::-1]]  # largest first


def _values(ev: _Evaluator, rows: np.ndarray) -> dict[str, np.ndarray]:
    return feasible(ev.limits, rows)[1]


class _Layout:
    """Where each relaxed distribution sits in a genome row, and the additive costs as torch arrays at one
    resolution."""

    def __init__(self, genome: Genome, terms: Sequence[Limit], resolution: int) -> None:
        import torch

        sp = genome.space
        s = sp.spec
        self.k_cols, self.e_cols = genome.columns["kernel_sizes"], genome.columns["expand_ratios"]
        self.d_cols = genome.columns["depths"]
        self.depth_sizes = [len(ds) for ds in sp.stage_depths]
        n_d = max(self.depth_sizes)
        self.depth_valid = torch.tensor([[j < n for j in range(n_d)] for n in self.depth_sizes])
        # P(slot runs) = sum of the stage's depth probabilities for depths above the slot's position
        self.runs = torch.zeros(sp.num_slots, len(sp.stage_slots), n_d)
        for stage, slots in enumerate(sp.stage_slots):
            for position, slot in enumerate(slots):
                for j, d in enumerate(sp.stage_depths[stage]):
                    self.runs[slot, stage, j] = float(d > position)
        self.costs = []
        r = genome.genes[int(genome.columns["resolution"][0])].choices[resolution]
        for lim in terms:
            add = lim.additive
            tab = add.block_sum.tables(int(r))
            self.costs.append((lim.maximum, add.scale * (tab.fixed + add.offset),
                               torch.tensor(add.block_sum.tables(int(r)).blocks * add.scale, dtype=torch.float32)))
        self.shape = (sp.num_slots, len(s.kernel_choices), len(s.expand_choices), n_d)

    def expected(self, pk, pe, pd):  # noqa: ANN001, ANN201 - torch tensors
        """E[cost] / limit of each limit with an additive form."""
        active = (self.runs * pd[None]).sum((1, 2))  # [slots]
        out = []
        for maximum, fixed, blocks in self.costs:
            per_slot = (blocks * pk[:, :, None] * pe[:, None, :]).sum((1, 2))
            out.append((fixed + (active * per_slot).sum()) / maximum)
        return out

    def row(self, genome: Genome, resolution: int, ak, ae, ad) -> np.ndarray:  # noqa: ANN001
        """The argmax subnet as a genome row."""
        out = np.zeros((1, genome.width), dtype=np.int64)
        out[0, int(genome.columns["resolution"][0])] = resolution
        out[0, self.k_cols] = ak.argmax(1).numpy()
        out[0, self.e_cols] = ae.argmax(1).numpy()
        out[0, self.d_cols] = ad.masked_fill(~self.depth_valid, -math.inf).argmax(1).numpy()
        return out


def _descend(genome: Genome, score: object, ev: _Evaluator, terms: Sequence[Limit], resolution: int, steps: int,
             cfg: GradientConfig, seed: int, bar: SearchProgress,
             history: list[float]) -> tuple[np.ndarray, list[np.ndarray], _Layout]:
    """Distinct feasible argmax rows of one resolution's descent, latest first (at most `cfg.candidates`), then the
    feasible new ones drawn from its distribution; its final logits (kernel, expand, depth) and its layout."""
    import torch
    import torch.nn.functional as F

    from ofakit.supernet.relaxed import relaxed_forward
    from ofakit.train.data import iterate_batches

    torch.manual_seed(seed)
    layout = _Layout(genome, terms, resolution)
    slots, n_k, n_e, n_d = layout.shape
    ak = torch.zeros(slots, n_k, requires_grad=True)
    ae = torch.zeros(slots, n_e, requires_grad=True)
    ad = torch.zeros(len(layout.depth_sizes), n_d, requires_grad=True)
    params = [ak, ae, ad]
    # Adam's moments, the second one shared by all logits: a gene whose choices matter little (both to the loss and
    # to the cost) then moves little, as with plain gradient descent, where per-logit scaling would amplify its noise
    first, second = [torch.zeros_like(a) for a in params], torch.zeros(())
    net = score.supernet
    for p in net.parameters():
        p.requires_grad_(False)
    r = int(genome.genes[int(genome.columns["resolution"][0])].choices[resolution])
    images = score.descent_set

    def batches():  # noqa: ANN202
        epoch = 0
        while True:
            yield from iterate_batches(images, cfg.batch_size, resolution=r, shuffle=True, seed=seed, epoch=epoch,
                                       drop_last=len(images) >= cfg.batch_size)
            epoch += 1

    lam, t0, t1 = cfg.penalty, *cfg.temperature
    seen: list[np.ndarray] = []
    row = layout.row(genome, resolution, ak.detach(), ae.detach(), ad.detach())
    for step, (x, y) in zip(range(steps), batches()):
        tau = t0 * (t1 / t0) ** (step / max(1, steps - 1))
        pk, pe = F.softmax(ak / tau, 1), F.softmax(ae / tau, 1)
        pd = F.softmax((ad / tau).masked_fill(~layout.depth_valid, -math.inf), 1)
        x = x.contiguous(memory_format=torch.channels_last)  # depthwise backward is ~2x faster so on a CPU
        paths = (pk, pe, pd) if not cfg.sampled else [_one_hot_sample(p) for p in (pk, pe, pd)]
        ce = F.cross_entropy(relaxed_forward(net, x, *paths), y)
        expected = layout.expected(pk, pe, pd)
        loss = ce + lam * sum(expected)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            second = 0.999 * second + 0.001 * torch.cat([g.ravel() for g in grads]).square().mean()
            scale = cfg.learning_rate / ((second / (1 - 0.999 ** (step + 1))).sqrt() + 1e-12)
            for a, g, m in zip(params, grads, first):
                m.mul_(0.9).add_(g, alpha=0.1)
                a.sub_(scale * m / (1 - 0.9 ** (step + 1)))
        row = layout.row(genome, resolution, ak.detach(), ae.detach(), ad.detach())
        mask, values = feasible(ev.limits, row)
        worst = max(float(values[lim.name][0]) / lim.maximum for lim in ev.limits)
        lam += cfg.penalty_rate * min(1.0, max(-1.0, worst - 1.0))
        if mask[0]:
            seen.append(row)
        history.append(float(expected[0].detach()))
        bar.advance(note=f"res {r}  lambda {lam:.3f}  argmax at {worst:.2f}x the limit")
    logits = [ak.detach().numpy(), ae.detach().numpy(), ad.detach().numpy()]
    if not feasible(ev.limits, row)[0][0]:
        seen.append(_repair(genome, ev, row, logits, layout))
    out, keys = [], set()
    for candidate in reversed(seen):
        key = int(genome.keys(candidate)[0])
        if key not in keys:
            keys.add(key)
            out.append(candidate)
        if len(out) == cfg.candidates:
            break
    if cfg.samples:  # as FBNet: subnets drawn from the learned distribution (temperature 1), the feasible new ones
        drawn = _sample(genome, resolution, logits, layout, cfg.samples, np.random.default_rng([seed, resolution]))
        mask, _ = feasible(ev.limits, drawn)
        for candidate, key in zip(drawn[mask], genome.keys(drawn[mask]).tolist()):
            if key not in keys:
                keys.add(key)
                out.append(candidate[None])
    return np.concatenate(out), logits, layout


def _one_hot_sample(p):  # noqa: ANN001, ANN202 - torch tensors
    """One choice per row drawn from `p`, one-hot in the forward pass, `p`'s gradient in the backward pass
    (ProxylessNAS's binarized paths)."""
    import torch

    hard = torch.zeros_like(p).scatter_(1, torch.multinomial(p.detach(), 1), 1.0)
    return hard + p - p.detach()


def _sample(genome: Genome, resolution: int, logits: list[np.ndarray], layout: _Layout, n: int,
            rng: Draws) -> np.ndarray:
    """`n` rows drawn gene by gene from softmax(logits) at `resolution`."""
    rows = np.zeros((n, genome.width), dtype=np.int64)
    rows[:, int(genome.columns["resolution"][0])] = resolution
    for cols, lg, sizes in zip([layout.k_cols, layout.e_cols, layout.d_cols], logits,
                               [None, None, layout.depth_sizes]):
        for i, col in enumerate(cols):
            z = lg[i, : sizes[i]] if sizes is not None else lg[i]
            p = np.exp(z - z.max())
            rows[:, col] = rng.choice(len(p), size=n, p=p / p.sum())
    return rows


def _changes(genome: Genome, row: np.ndarray, logits: list[np.ndarray], layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Every change of one kernel, expand or depth gene of `row`, and the logit each loses (negative: gains)."""
    rows, lost = [], []
    for cols, lg in zip([layout.k_cols, layout.e_cols, layout.d_cols], logits):
        for i, col in enumerate(cols):
            now = int(row[0, col])
            for choice in range(int(genome.sizes[col])):
                if choice != now:
                    option = row.copy()
                    option[0, col] = choice
                    rows.append(option)
                    lost.append(float(lg[i, now] - lg[i, choice]))
    return np.concatenate(rows), np.array(lost)


def _repair(genome: Genome, ev: _Evaluator, row: np.ndarray, logits: list[np.ndarray], layout: _Layout) -> np.ndarray:
    """`row` changed one gene at a time (the change that saves the most of the worst limit's cost per unit of logit
    lost) until it meets the limits; InfeasibleError if even that fails."""
    row = row.copy()
    for _ in range(genome.width * int(genome.sizes.max())):
        mask, values = feasible(ev.limits, row)
        if mask[0]:
            return row
        worst = max(ev.limits, key=lambda lim: float(values[lim.name][0]) / lim.maximum)
        cand, lost = _changes(genome, row, logits, layout)
        saved = float(values[worst.name][0]) - worst.cost(cand)
        gain = np.where(saved > 0, saved / (lost + 1e-3 + 1e-9), -np.inf)
        if not np.isfinite(gain).any():
            break
        row = cand[int(np.argmax(gain)) : int(np.argmax(gain)) + 1]
    raise _infeasible(ev)


def _fill(genome: Genome, ev: _Evaluator, row: np.ndarray, logits: list[np.ndarray], layout: _Layout, *,
          most: int | None = None) -> np.ndarray:
    """`row` grown one gene at a time into the room the limits leave (at most `most` changes): of the changes that
    raise its cost (the sum over limits of cost / limit) and still meet every limit, the one whose choice loses the
    least logit, until none is left. The descent stops short of the limit where the cross-entropy of frozen weights
    asks for no more; a larger subnet of a trained supernet is rarely the worse one."""
    row = row.copy()
    for _ in range(most if most is not None else genome.width * int(genome.sizes.max())):
        cand, lost = _changes(genome, row, logits, layout)
        mask, values = feasible(ev.limits, np.concatenate([row, cand]))
        used = sum(values[lim.name] / lim.maximum for lim in ev.limits)
        grows = mask[1:] & (used[1:] > used[0] + 1e-12)
        if not grows.any():
            break
        best = int(np.argmin(np.where(grows, lost, np.inf)))
        row = cand[best : best + 1]
    return row


def with_table_form(limit: Limit, device: str, space: str, scale: float = 1.0) -> Limit:
    """A latency limit whose model has no additive form (a learned predictor), given the device's table sum as the
    form the descent differentiates; every check stays the limit's own cost. Unchanged where it has a form already
    or the device has no table of the space."""
    from ofakit.latency.estimate import LutEstimator
    from ofakit.latency.table import available_tables, find_table

    if limit.additive is not None or space not in available_tables(device):
        return limit
    return replace(limit, additive=LutEstimator(find_table(device, space)).additive(scale))

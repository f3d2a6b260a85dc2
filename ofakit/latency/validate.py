"""Check latency estimates against end-to-end measurement of random subnets on the device.

Subnets are extracted from a freshly built supernet (`extract_subnet`), loaded through the device's backend and
measured interleaved (every subnet once per round, forward and backward order alternating), in groups that also hold
the table's reference model. Each group is measured in two passes: their disagreement is the noise floor, the
accuracy no estimator can beat on this machine. Estimators compared: the LUT sum (`ofakit.latency.estimate`), the
same scaled by (reference now) / (reference in the table) — drift normalization — and a FLOPs-linear baseline
(a * MACs + b, fitted on the other folds). Metrics: share within +-10 %, mean absolute percentage error, Spearman
rank correlation.
"""
from __future__ import annotations

import random
import statistics
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.io import atomic_path
from ofakit.latency.backends import Backend, Runner, backend_for
from ofakit.latency.devices import DeviceSpec
from ofakit.latency.estimate import LutEstimator
from ofakit.latency.table import LatencyTable
from ofakit.space import SearchSpace

if TYPE_CHECKING:
    from ofakit.predict.latency import LatencyPredictor


@dataclass(frozen=True)
class ValidateConfig:
    """How subnets are sampled and measured."""

    samples: int = 30  # random subnets
    resolutions: tuple[int, ...] = ()  # drawn from these (empty: every resolution the table covers)
    seed: int = 0  # seeds the subnets
    group: int = 25  # subnets loaded and interleaved at once (memory: one runtime session each)
    warmup: int = 2  # untimed rounds per pass
    reps: int = 8  # timed rounds per pass (each visit: one untimed call, then `calls` timed ones)
    calls: int = 3  # timed calls per visit


@dataclass
class Validation:
    """Measured and estimated latencies (ms) of the sampled subnets, and the metrics of each estimator."""

    archs: list[ArchConfig]
    measured: np.ndarray  # mean of the two passes, each the table's statistic (p10 or median) of its calls
    passes: tuple[np.ndarray, np.ndarray]  # the two passes, for the noise floor
    estimates: dict[str, np.ndarray]  # estimator name -> ms
    reference: dict[str, float] = field(default_factory=dict)  # table level and median measured now
    macs: np.ndarray | None = None

    def metrics(self) -> dict[str, dict[str, float]]:
        out = {name: accuracy(pred, self.measured) for name, pred in self.estimates.items()}
        out["noise_floor"] = accuracy(self.passes[1], self.passes[0])
        return out


def accuracy(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Share within +-10 %, MAPE (%), and Spearman rank correlation of predicted vs measured."""
    rel = predicted / measured - 1.0
    return {"within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "mape_pct": float(100 * np.mean(np.abs(rel))),
            "spearman": spearman(predicted, measured), "bias_pct": float(100 * np.median(rel))}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ranks by sorting; ties are rare for timings)."""
    if len(a) < 2:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def sample_archs(space: SearchSpace, resolutions: Sequence[int], n: int, rng: random.Random, *,
                 exclude: Callable[[ArchConfig], bool] | None = None) -> list[ArchConfig]:
    """`n` distinct random subnets with resolutions drawn from `resolutions`, none for which `exclude` is true."""
    out: dict[ArchConfig, None] = {}
    while len(out) < n:
        a = space.sample(rng)
        a = ArchConfig.from_dict({**a.to_dict(), "resolution": rng.choice(list(resolutions))})
        if exclude is None or not exclude(a):
            out.setdefault(a, None)
    return list(out)


def interleaved(runners: Sequence[Runner], *, warmup: int, reps: int, calls: int = 3) -> list[list[float]]:
    """ms per call of each runner over `reps` rounds (after `warmup`), each round visiting every runner once, in
    forward order on even rounds and backward on odd ones.

    A visit makes one untimed call (the model's weights come back into the caches, as they are when a layer is
    profiled back to back) and then `calls` timed ones, so that interleaving spreads drift without timing cold caches.
    """
    times: list[list[float]] = [[] for _ in runners]
    for rnd in range(warmup + reps):
        order = range(len(runners)) if rnd % 2 == 0 else reversed(range(len(runners)))
        for i in order:
            runners[i].time(1)
            t = runners[i].time(calls)
            if rnd >= warmup:
                times[i].extend(t)
    return times


def _statistic(times: Sequence[float], name: str) -> float:
    """The statistic a table's entries hold, of end-to-end times (so both sides of the comparison agree)."""
    if name == "p10":
        ordered = sorted(times)
        return ordered[int(0.1 * (len(ordered) - 1))]
    return statistics.median(times) if name == "median" else statistics.fmean(times)


def flops_linear(macs: np.ndarray, measured: np.ndarray, folds: int = 5) -> np.ndarray:
    """Out-of-fold predictions of latency = a * MACs + b (least squares on the other folds)."""
    n = len(macs)
    pred = np.empty(n)
    idx = np.arange(n)
    for f in range(min(folds, n)):
        test = idx % folds == f
        train = ~test if (~test).sum() >= 2 else np.ones(n, dtype=bool)
        a, b = np.polyfit(macs[train], measured[train], 1)
        pred[test] = a * macs[test] + b
    return pred


@dataclass
class MeasuredGroup:
    """One group of subnets measured end to end: each pass's statistic per subnet, and the reference model's level."""

    archs: list[ArchConfig]
    passes: tuple[list[float], list[float]]
    reference_ms: tuple[float, float] | None  # the reference's p10 in each pass (None: the table has no reference)

    @property
    def measured(self) -> list[float]:
        """Per subnet, the mean of its two passes."""
        return [(a + b) / 2 for a, b in zip(*self.passes)]

    @property
    def reference_level(self) -> float | None:
        return None if self.reference_ms is None else statistics.median(self.reference_ms)


def check_resolutions(table: LatencyTable, resolutions: Sequence[int]) -> tuple[int, ...]:
    """`resolutions`, or every resolution of the table when empty; a resolution the table lacks is a ConfigError."""
    resolutions = tuple(resolutions) or tuple(table.resolutions)
    missing = [r for r in resolutions if r not in table.entries]
    if missing:
        raise ConfigError(f"latency table {table.name!r} has no entries at resolution(s) "
                          f"{', '.join(map(str, missing))} (it has: {', '.join(map(str, table.resolutions))})")
    return resolutions


def measure_groups(device: DeviceSpec, space: SearchSpace, table: LatencyTable, archs: Sequence[ArchConfig],
                   cfg: ValidateConfig = ValidateConfig()) -> Iterator[MeasuredGroup]:
    """Measure `archs` end to end in groups of `cfg.group`, each interleaved with the table's reference model and
    timed in two passes; yields each group once measured (so a caller can store it before the next one starts)."""
    from ofakit.latency.profile import reference_runner
    from ofakit.supernet import build_supernet, extract_subnet

    backend: Backend = backend_for(device)
    ref = table.meta.get("reference") or {}
    ref_arch = ArchConfig.from_dict(ref["arch"]) if ref.get("arch") else None
    supernet = build_supernet(space).eval()
    for start in range(0, len(archs), cfg.group):
        chunk = list(archs[start:start + cfg.group])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runners = [backend.load(extract_subnet(supernet, a).eval(), (backend.settings.batch, 3, a.resolution,
                                                                         a.resolution)) for a in chunk]
            if ref_arch is not None:
                runners.append(reference_runner(backend, space, ref_arch))
        passes: tuple[list[float], list[float]] = ([], [])
        refs: list[float] = []
        for p in range(2):
            times = interleaved(runners, warmup=cfg.warmup, reps=cfg.reps, calls=cfg.calls)
            if ref_arch is not None:  # the reference level as in profiling: a low percentile
                ref_times = sorted(times.pop())
                refs.append(ref_times[int(0.1 * (len(ref_times) - 1))])
            passes[p].extend(_statistic(t, table.statistic) for t in times)
        del runners
        yield MeasuredGroup(chunk, passes, (refs[0], refs[1]) if refs else None)


def validate(device: DeviceSpec, space: SearchSpace, table: LatencyTable, cfg: ValidateConfig = ValidateConfig(), *,
             predictor: LatencyPredictor | None = None,
             on_group: Callable[[int, int], None] | None = None) -> Validation:
    """Measure `cfg.samples` random subnets end to end and compare them with the estimators.

    With a learned `predictor` (`ofakit.predict.latency`), the subnets it was fitted on are never drawn, and it is
    scored next to the LUT sum, as is and scaled by the drift.
    """
    if cfg.samples < 2:
        raise ConfigError(f"--samples must be at least 2, got {cfg.samples}")
    resolutions = check_resolutions(table, cfg.resolutions)
    archs = sample_archs(space, resolutions, cfg.samples, random.Random(cfg.seed),
                         exclude=predictor.fitted_on if predictor is not None else None)
    lut, lut_rounds = LutEstimator(table, space), LutEstimator(table, space, per_round=True)
    estimates = {"lut": lut.estimate_batch(archs), "lut_round_normalized": lut_rounds.estimate_batch(archs)}
    if predictor is not None:
        estimates["predictor"] = predictor.estimate_batch(archs)
    passes: tuple[list[float], list[float]] = ([], [])
    drift: list[float] = []
    refs_now: list[float] = []
    groups = -(-len(archs) // cfg.group)
    for g, group in enumerate(measure_groups(device, space, table, archs, cfg)):
        passes[0].extend(group.passes[0])
        passes[1].extend(group.passes[1])
        if group.reference_ms is not None:
            refs_now.extend(group.reference_ms)
            drift.extend([group.reference_level / table.reference_ms] * len(group.archs))
        if on_group:
            on_group(g + 1, groups)
    first, second = np.array(passes[0]), np.array(passes[1])
    measured = (first + second) / 2
    if drift:
        scale = np.array(drift)
        for name in [k for k in estimates if k != "lut_round_normalized"]:
            estimates[f"{name}_drift_normalized"] = estimates[name] * scale
        estimates["lut_round_and_drift_normalized"] = estimates["lut_round_normalized"] * scale
    macs = np.array([space.macs(a) for a in archs], dtype=np.float64)
    estimates["flops_linear"] = flops_linear(macs, measured)
    reference: dict[str, Any] = {}
    if refs_now:
        reference = {"table_ms": table.reference_ms, "now_ms": statistics.median(refs_now),
                     "scale": float(np.median(drift))}
    return Validation(archs, measured, (first, second), estimates, reference, macs)


def plot(result: Validation, path: str, title: str) -> None:
    """Predicted vs measured scatter (one colour per estimator) with the +-10 % band, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib, which is not installed; install it with: "
                          "pip install 'ofakit[plot]'") from None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = float(result.measured.min()) * 0.8, float(result.measured.max()) * 1.2
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="±10 %")
    for name in ("lut", "lut_drift_normalized", "predictor", "predictor_drift_normalized", "flops_linear"):
        if name in result.estimates:
            ax.scatter(result.measured, result.estimates[name], s=12, label=name)
    ax.set_xlabel("measured (ms)")
    ax.set_ylabel("estimated (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)

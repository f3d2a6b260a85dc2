"""Check latency estimates against end-to-end measurement of random subnets on the device.

Subnets are measured as `ofakit.latency.measure` does (interleaved, in groups with the table's reference model, two
passes whose disagreement is the noise floor, the accuracy no estimator can beat on this machine). Estimators
compared: the LUT sum (`ofakit.latency.estimate`), the same scaled by (reference now) / (reference in the table) —
drift normalization — and a FLOPs-linear baseline (a * MACs + b, fitted on the other folds; from 3 subnets).
Metrics: share within +-10 %, mean absolute percentage error, Spearman rank correlation.
"""
from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.latency.devices import DeviceSpec
from ofakit.latency.estimate import Estimator, LutEstimator
from ofakit.latency.measure import ValidateConfig, check_resolutions, measure_groups, sample_archs
from ofakit.latency.table import LatencyTable
from ofakit.metrics import error_metrics
from ofakit.space import SearchSpace


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
        out = {name: error_metrics(pred, self.measured) for name, pred in self.estimates.items()}
        out["noise_floor"] = error_metrics(self.passes[1], self.passes[0])
        return out


def flops_linear(macs: np.ndarray, measured: np.ndarray, folds: int = 5) -> np.ndarray:
    """Out-of-fold predictions of latency = a * MACs + b (least squares on the other folds, never on the subnet
    predicted); a ConfigError for fewer than 3 subnets, where a fold would leave fewer than 2 to fit the line on."""
    n = len(macs)
    if n < 3:
        raise ConfigError(f"the FLOPs-linear baseline needs at least 3 subnets (each predicted by a line fitted on "
                          f"others), got {n}")
    pred = np.empty(n)
    idx = np.arange(n)
    for f in range(min(folds, n)):
        test = idx % folds == f
        a, b = np.polyfit(macs[~test], measured[~test], 1)
        pred[test] = a * macs[test] + b
    return pred


def validate(device: DeviceSpec, space: SearchSpace, table: LatencyTable, cfg: ValidateConfig = ValidateConfig(), *,
             predictor: Estimator | None = None,
             on_group: Callable[[int, int], None] | None = None) -> Validation:
    """Measure `cfg.samples` random subnets end to end and compare them with the estimators.

    With another estimator `predictor` (e.g. a learned one, `ofakit.predict.latency`), the subnets it was fitted on
    are never drawn, and it is scored next to the LUT sum, as is and scaled by the drift.
    """
    if cfg.samples < 2:
        raise ConfigError(f"--samples must be at least 2, got {cfg.samples}")
    resolutions = check_resolutions(table, cfg.resolutions)
    archs = sample_archs(space, resolutions, cfg.samples, random.Random(cfg.seed),
                         exclude=None if predictor is None else predictor.fitted_on)
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
    if len(archs) >= 3:  # (with 2, each line would be fitted on 1 subnet: not reported)
        estimates["flops_linear"] = flops_linear(macs, measured)
    reference: dict[str, Any] = {}
    if refs_now:
        reference = {"table_ms": table.reference_ms, "now_ms": statistics.median(refs_now),
                     "scale": float(np.median(drift))}
    return Validation(archs, measured, (first, second), estimates, reference, macs)


def plot(result: Validation, path: str, title: str) -> None:
    """Predicted vs measured scatter (one colour per estimator) with the +-10 % band, as a PNG."""
    from ofakit.plot import pyplot, save_png

    plt = pyplot("--plot")
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
    save_png(fig, path)

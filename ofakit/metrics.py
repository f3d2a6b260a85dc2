"""Small metrics shared by the stages that score an estimate against a measurement: the share within a relative
tolerance, the mean absolute percentage error, and rank correlations (Spearman's rho, Kendall's tau)."""
from __future__ import annotations

import numpy as np


def relative_error(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """predicted / measured - 1, element-wise."""
    return np.asarray(predicted, dtype=np.float64) / np.asarray(measured, dtype=np.float64) - 1.0


def within(predicted: np.ndarray, measured: np.ndarray, tolerance: float = 0.10) -> float:
    """Share of estimates within +-`tolerance` (relative) of the measurement."""
    return float(np.mean(np.abs(relative_error(predicted, measured)) <= tolerance))


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute percentage error (%)."""
    return float(100 * np.mean(np.abs(relative_error(predicted, measured))))


def ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties given their average rank."""
    a = np.asarray(a)
    order = np.argsort(a, kind="mergesort")
    r = np.empty(len(a), dtype=np.float64)
    r[order] = np.arange(len(a))
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    if (counts > 1).any():  # average the ranks within each group of ties
        sums = np.bincount(inverse, weights=r)
        r = (sums / counts)[inverse]
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN for fewer than two values."""
    if len(a) < 2:
        return float("nan")
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b over all pairs (O(n^2) memory in blocks; fine for the few thousand records we score)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = len(a)
    if n < 2:
        return float("nan")
    concordant = ties_a = ties_b = 0.0
    for start in range(0, n, 512):
        da = np.sign(a[start:start + 512, None] - a[None, :])
        db = np.sign(b[start:start + 512, None] - b[None, :])
        concordant += float((da * db).sum())
        ties_a += float((da == 0).sum())
        ties_b += float((db == 0).sum())
    pairs = n * n
    denom = np.sqrt((pairs - ties_a) * (pairs - ties_b))
    return float(concordant / denom) if denom else float("nan")


def error_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Share within +-10 %, MAPE (%), Spearman rank correlation and median relative error (%) of an estimate."""
    return {"within_10pct": within(predicted, measured), "mape_pct": mape(predicted, measured),
            "spearman": spearman(predicted, measured),
            "bias_pct": float(100 * np.median(relative_error(predicted, measured)))}


__all__ = ["error_metrics", "kendall", "mape", "ranks", "relative_error", "spearman", "within"]

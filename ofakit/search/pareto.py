"""Pareto fronts of predicted accuracy against a cost (latency, MACs), and their plot."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats (lower or equal cost and higher score), by increasing cost."""
    costs, scores = np.asarray(costs, dtype=float), np.asarray(scores, dtype=float)
    order = np.lexsort((-scores, costs))
    front, best = [], -np.inf
    for i in order:
        if scores[i] > best:
            front.append(i)
            best = scores[i]
    return np.array(front, dtype=int)


def plot_fronts(path: str | Path, fronts: dict[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str,
                ylabel: str, title: str = "") -> Path:
    """Write a PNG with one line per named front (needs matplotlib)."""
    from ofakit.plot import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for name, (x, y) in fronts.items():
        ax.plot(x, y, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_png(fig, path)

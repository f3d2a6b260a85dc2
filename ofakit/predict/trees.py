"""Gradient-boosted regression trees stored as plain arrays and evaluated in NumPy (no pickles, no scikit-learn
needed to predict; Friedman, "Greedy Function Approximation: A Gradient Boosting Machine", 2001).

A fitted scikit-learn GradientBoostingRegressor becomes one row per tree of node arrays (feature, threshold, left,
right, value), padded to the largest tree; `gbm_predict` walks all rows of a batch down each tree at once. Used by the
accuracy predictors (`ofakit.predict.accuracy`) and the latency predictor (`ofakit.predict.latency`).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def gbm_to_arrays(model: Any) -> dict[str, np.ndarray]:
    """A fitted sklearn GradientBoostingRegressor as flat arrays (one row block per tree)."""
    trees = [est[0].tree_ for est in model.estimators_]
    size = max(t.node_count for t in trees)

    def stack(attr: str, fill: float) -> np.ndarray:
        out = np.full((len(trees), size), fill, dtype=np.float64)
        for i, t in enumerate(trees):
            values = getattr(t, attr)
            out[i, : t.node_count] = values.reshape(t.node_count, -1)[:, 0] if attr == "value" else values
        return out

    init = float(np.asarray(model.init_.constant_).ravel()[0]) if hasattr(model.init_, "constant_") \
        else float(model._raw_predict_init(np.zeros((1, model.n_features_in_)))[0, 0])
    return {"tree_feature": stack("feature", -2), "tree_threshold": stack("threshold", 0.0),
            "tree_left": stack("children_left", -1), "tree_right": stack("children_right", -1),
            "tree_value": stack("value", 0.0), "learning_rate": np.array([model.learning_rate]),
            "init": np.array([init])}


def gbm_predict(arrays: dict[str, np.ndarray], x: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """The model's prediction for each row of `x` (features in the order it was fitted on).

    All trees walk down at once, one level per step over a [tree, row] array of nodes (rows in chunks of `chunk`
    to bound memory), so a small batch costs a few dozen NumPy calls rather than a few per tree. Features are
    compared in float32, as scikit-learn's trees do, so a value next to a threshold takes the same branch.
    """
    x = np.asarray(x, dtype=np.float32)
    feature = arrays["tree_feature"].astype(np.int64)
    threshold = arrays["tree_threshold"]
    left, right = arrays["tree_left"].astype(np.int64), arrays["tree_right"].astype(np.int64)
    value = arrays["tree_value"]
    trees = np.arange(feature.shape[0])[:, None]
    out = np.empty(len(x))
    for lo in range(0, len(x), chunk):
        part = x[lo:lo + chunk]
        rows = np.arange(len(part))[None, :]
        node = np.zeros((feature.shape[0], len(part)), dtype=np.int64)
        while True:
            f = feature[trees, node]
            leaf = f < 0
            if leaf.all():
                break
            go_left = part[rows, np.where(leaf, 0, f)] <= threshold[trees, node]
            node = np.where(leaf, node, np.where(go_left, left[trees, node], right[trees, node]))
        out[lo:lo + chunk] = arrays["init"][0] + arrays["learning_rate"][0] * value[trees, node].sum(axis=0)
    return out

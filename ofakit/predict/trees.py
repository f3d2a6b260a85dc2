"""Gradient-boosted regression trees stored as plain arrays and evaluated in NumPy (no pickles, no scikit-learn
needed to predict; Friedman, "Greedy Function Approximation: A Gradient Boosting Machine", 2001).

A fitted scikit-learn GradientBoostingRegressor becomes one row per tree of node arrays (feature, threshold, left,
right, value), padded to the largest tree; `gbm_predict` walks all rows of a batch down each tree at once. Used by the
accuracy predictors (`ofakit.predict.accuracy`) and the latency predictors (`ofakit.predict.latency`,
`ofakit.predict.structural`). The arrays come from user files, so their loaders check them once with
`check_gbm_arrays`; `gbm_predict` itself refuses missing or mismatched arrays and a walk that does not end.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ofakit.errors import ConfigError

NODE_ARRAYS = ("tree_feature", "tree_threshold", "tree_left", "tree_right", "tree_value")  # each [trees, nodes]
GBM_ARRAYS = (*NODE_ARRAYS, "init", "learning_rate")  # the last two: one number each


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


def check_gbm_arrays(arrays: Mapping[str, Any], *, features: int | None = None,
                     where: str = "gradient-boosted trees") -> dict[str, np.ndarray]:
    """The arrays as float64, once checked that `gbm_predict` can walk them; else one ConfigError line starting
    with `where` (e.g. the file they came from).

    Checked: every array of GBM_ARRAYS is there, numeric and finite; the node arrays share one [trees, nodes] shape
    (at least one of each); init and learning_rate hold one number; a split node's feature is a whole number below
    `features` (when given) and its children whole numbers after it inside its tree, so every walk goes down and
    ends at a leaf (a node with a negative feature).
    """
    missing = [k for k in GBM_ARRAYS if k not in arrays]
    if missing:
        raise ConfigError(f"{where}: gradient-boosted trees need arrays {', '.join(GBM_ARRAYS)}; missing "
                          f"{', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    for k in GBM_ARRAYS:
        try:
            out[k] = np.asarray(arrays[k], dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: array {k} must hold numbers") from None
        if not np.isfinite(out[k]).all():
            raise ConfigError(f"{where}: array {k} holds a number that is not finite")
    shapes = {k: out[k].shape for k in NODE_ARRAYS}
    if len(set(shapes.values())) != 1 or len(shapes["tree_feature"]) != 2 or 0 in shapes["tree_feature"]:
        raise ConfigError(f"{where}: arrays {', '.join(NODE_ARRAYS)} must share one [trees, nodes] shape; got "
                          + ", ".join(f"{k} {s}" for k, s in shapes.items()))
    for k in ("init", "learning_rate"):
        if out[k].size != 1:
            raise ConfigError(f"{where}: array {k} must hold one number, got shape {out[k].shape}")
    feature, left, right = out["tree_feature"], out["tree_left"], out["tree_right"]
    split = feature >= 0
    whole = [k for k in ("tree_feature", "tree_left", "tree_right") if (out[k] != np.round(out[k])).any()]
    if whole:
        raise ConfigError(f"{where}: arrays {', '.join(whole)} must hold whole numbers")
    if features is not None and split.any() and feature[split].max() >= features:
        raise ConfigError(f"{where}: a split reads feature {int(feature[split].max())}, but the model has "
                          f"{features} features")
    node = np.broadcast_to(np.arange(feature.shape[1]), feature.shape)
    for name, child in (("tree_left", left), ("tree_right", right)):
        bad = split & ((child <= node) | (child >= feature.shape[1]))
        if bad.any():
            t, n = (int(i[0]) for i in np.nonzero(bad))
            raise ConfigError(f"{where}: {name}[{t}, {n}] is {child[t, n]:g}; a child must come after its node "
                              f"({n}) inside its tree ({feature.shape[1]} nodes)")
    return out


def gbm_predict(arrays: Mapping[str, np.ndarray], x: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """The model's prediction for each row of `x` (features in the order it was fitted on).

    All trees walk down at once, one level per step over a [tree, row] array of nodes (rows in chunks of `chunk`
    to bound memory), so a small batch costs a few dozen NumPy calls rather than a few per tree. Features are
    compared in float32, as scikit-learn's trees do, so a value next to a threshold takes the same branch.

    The arrays are those of a loader that checked them (`check_gbm_arrays`); missing or mismatched ones, too few
    features in `x` and a walk that does not end are still one ConfigError here, never a raw error or a hang.
    """
    missing = [k for k in GBM_ARRAYS if k not in arrays]
    if missing:
        raise ConfigError(f"gradient-boosted trees: missing arrays {', '.join(missing)}")
    shapes = {np.shape(arrays[k]) for k in NODE_ARRAYS}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or np.size(arrays["init"]) != 1 \
            or np.size(arrays["learning_rate"]) != 1:
        raise ConfigError(f"gradient-boosted trees: arrays {', '.join(NODE_ARRAYS)} must share one [trees, nodes] "
                          "shape, init and learning_rate hold one number each")
    x = np.asarray(x, dtype=np.float32)
    feature = np.asarray(arrays["tree_feature"]).astype(np.int64)
    width = int(feature.max()) + 1 if feature.size else 0
    if x.ndim != 2 or x.shape[1] < width:
        raise ConfigError(f"gradient-boosted trees read {width} features; got an array of shape {x.shape}")
    threshold = np.asarray(arrays["tree_threshold"])
    left, right = (np.asarray(arrays[k]).astype(np.int64) for k in ("tree_left", "tree_right"))
    value = np.asarray(arrays["tree_value"])
    init, rate = np.ravel(arrays["init"])[0], np.ravel(arrays["learning_rate"])[0]
    trees = np.arange(feature.shape[0])[:, None]
    out = np.empty(len(x))
    for lo in range(0, len(x), chunk):
        part = x[lo:lo + chunk]
        rows = np.arange(len(part))[None, :]
        node = np.zeros((feature.shape[0], len(part)), dtype=np.int64)
        for _ in range(feature.shape[1] + 1):  # a walk down a tree of N nodes ends in at most N - 1 steps
            try:
                f = feature[trees, node]
            except IndexError:
                raise ConfigError("gradient-boosted trees: a child index points outside its tree") from None
            leaf = f < 0
            if leaf.all():
                break
            go_left = part[rows, np.where(leaf, 0, f)] <= threshold[trees, node]
            node = np.where(leaf, node, np.where(go_left, left[trees, node], right[trees, node]))
        else:
            raise ConfigError("gradient-boosted trees: a child index points back up its tree (the walk never ends)")
        out[lo:lo + chunk] = init + rate * value[trees, node].sum(axis=0)
    return out

"""Gradient-boosted trees as plain arrays: the arrays of a fitted scikit-learn model predict what scikit-learn
predicts on rows it was not fitted on, leaf for leaf, including rows that sit on a split threshold."""
from __future__ import annotations

import numpy as np
import pytest

from ofakit.errors import ConfigError
from ofakit.predict.trees import check_gbm_arrays, gbm_predict, gbm_to_arrays

sklearn_ensemble = pytest.importorskip("sklearn.ensemble")


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 6 features (one integer-valued, like a one-hot choice) and a target that needs several splits."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 6))
    x[:, 5] = rng.integers(0, 3, n)
    y = 3 * x[:, 0] + np.sin(6 * x[:, 1]) + x[:, 5] * x[:, 2] + rng.normal(0, 0.1, n)
    return x, y


def _fitted(**kwargs):
    x, y = _data()
    settings = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.1, "random_state": 0, **kwargs}
    return sklearn_ensemble.GradientBoostingRegressor(**settings).fit(x[:300], y[:300]), x[300:]


@pytest.mark.parametrize("settings", [
    {},
    {"subsample": 0.8, "max_depth": 4},  # the accuracy predictor's kind of model: trees of different sizes
    {"loss": "absolute_error"},  # the initial estimate is a median, not the mean
    {"loss": "huber", "alpha": 0.8},
    {"init": "zero"},  # no initial estimator: the raw start is 0
], ids=["squared", "subsample", "absolute", "huber", "zero-init"])
def test_arrays_predict_what_sklearn_predicts_on_held_out_rows(settings):
    model, held_out = _fitted(**settings)
    expected = model.predict(held_out)
    assert np.ptp(expected) > 1  # the trees do split these rows
    np.testing.assert_allclose(gbm_predict(gbm_to_arrays(model), held_out), expected, rtol=0, atol=1e-12)


def _leaves(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The leaf each row reaches in each tree, read through gbm_predict: one tree at a time, valued by node index."""
    columns = []
    for t in range(arrays["tree_feature"].shape[0]):
        one = {k: v[t:t + 1] for k, v in arrays.items() if k.startswith("tree_")}
        one["tree_value"] = np.arange(one["tree_feature"].shape[1], dtype=np.float64)[None, :]
        columns.append(gbm_predict({**one, "init": np.zeros(1), "learning_rate": np.ones(1)}, x))
    return np.stack(columns, axis=1)


def test_every_row_reaches_sklearns_leaf_in_every_tree():
    model, held_out = _fitted(max_depth=4, subsample=0.8)
    np.testing.assert_array_equal(_leaves(gbm_to_arrays(model), held_out), model.apply(held_out))


def test_values_on_and_next_to_a_threshold_branch_as_sklearn():
    """Trees compare features in float32: a float64 value a hair above a threshold can round onto it."""
    model, held_out = _fitted()
    arrays = gbm_to_arrays(model)
    split = arrays["tree_feature"] >= 0
    features = arrays["tree_feature"][split].astype(int)[:12]
    thresholds = arrays["tree_threshold"][split][:12]
    rows = []
    for f, t in zip(features, thresholds):
        t32 = np.float32(t)
        for value in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), float(np.nextafter(t32, np.float32(2)))):
            row = held_out[len(rows) % len(held_out)].copy()
            row[f] = value
            rows.append(row)
    rows = np.array(rows)
    np.testing.assert_array_equal(_leaves(arrays, rows), model.apply(rows))
    np.testing.assert_allclose(gbm_predict(arrays, rows), model.predict(rows), rtol=0, atol=1e-12)


def test_layout_one_row_per_tree_padded_with_leaves():
    model, _ = _fitted(max_depth=4, subsample=0.7)
    arrays = gbm_to_arrays(model)
    trees = [est[0].tree_ for est in model.estimators_]
    size = max(t.node_count for t in trees)
    assert min(t.node_count for t in trees) < size  # some tree is padded
    for name in ("tree_feature", "tree_threshold", "tree_left", "tree_right", "tree_value"):
        assert arrays[name].shape == (40, size) and arrays[name].dtype == np.float64
    for i, tree in enumerate(trees):
        n = tree.node_count
        np.testing.assert_array_equal(arrays["tree_left"][i, :n], tree.children_left)
        np.testing.assert_array_equal(arrays["tree_value"][i, :n], tree.value[:, 0, 0])
        assert (arrays["tree_feature"][i, n:] == -2).all() and (arrays["tree_left"][i, n:] == -1).all()
    assert arrays["learning_rate"].tolist() == [0.1]
    assert arrays["init"][0] == pytest.approx(model.init_.constant_[0, 0])


def test_arrays_survive_a_safetensors_round_trip(tmp_path):
    """Bundles store the arrays as float64 safetensors: node indices and features come back exact."""
    from safetensors.numpy import load_file, save_file

    model, held_out = _fitted()
    arrays = gbm_to_arrays(model)
    save_file(arrays, str(tmp_path / "p.safetensors"))
    back = load_file(str(tmp_path / "p.safetensors"))
    assert np.array_equal(gbm_predict(back, held_out), gbm_predict(arrays, held_out))


def test_chunks_do_not_change_the_result():
    """Rows walk the trees in chunks; a row's prediction does not depend on its chunk (beyond the last bit of the
    sum over trees, which NumPy adds in another order for a chunk of one row)."""
    model, held_out = _fitted()
    arrays = gbm_to_arrays(model)
    whole = gbm_predict(arrays, held_out)
    for chunk in (1, 7, 64):
        np.testing.assert_allclose(gbm_predict(arrays, held_out, chunk=chunk), whole, rtol=0, atol=1e-12)


def test_an_empty_batch_and_single_leaf_trees():
    x, _ = _data(50)
    model = sklearn_ensemble.GradientBoostingRegressor(n_estimators=5).fit(x, np.full(50, 0.7))
    arrays = gbm_to_arrays(model)
    assert arrays["tree_feature"].shape == (5, 1)  # a constant target: every tree is one leaf
    assert gbm_predict(arrays, x[:0]).shape == (0,)
    np.testing.assert_allclose(gbm_predict(arrays, x[:3]), model.predict(x[:3]), rtol=0, atol=1e-12)


def _malformed(kind: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    model, held_out = _fitted()
    arrays = gbm_to_arrays(model)
    split = arrays["tree_feature"] >= 0
    if kind == "missing-array":
        del arrays["tree_value"]
    elif kind == "ragged":
        arrays["tree_value"] = arrays["tree_value"][:5]
    elif kind == "child-out-of-range":
        arrays["tree_left"] = np.where(arrays["tree_left"] >= 0, arrays["tree_left"] + 1000, -1)
    elif kind == "child-back-up":  # a split node's left child is the root: the walk would go round for ever
        arrays["tree_left"] = np.where(split, 0, arrays["tree_left"])
    elif kind == "too-few-features":
        held_out = held_out[:, :2]
    elif kind == "two-inits":
        arrays["init"] = np.zeros(2)
    return arrays, held_out


MALFORMED = {  # kind -> what gbm_predict's one line says, what check_gbm_arrays' one line says
    "missing-array": ("missing arrays tree_value", "p.safetensors: gradient-boosted trees need arrays .*; missing "
                                                    "tree_value"),
    "ragged": ("must share one \\[trees, nodes\\] shape", "p.safetensors: arrays .* must share one "
                                                           "\\[trees, nodes\\] shape; got .*tree_value \\(5, "),
    "child-out-of-range": ("a child index points outside its tree", "p.safetensors: tree_left\\[0, 0\\] is 1001; a "
                                                                    "child must come after its node \\(0\\)"),
    "child-back-up": ("points back up its tree", "p.safetensors: tree_left\\[0, 0\\] is 0; a child must come after "
                                                 "its node \\(0\\)"),
    "too-few-features": ("read 6 features; got an array of shape \\(100, 2\\)", None),
    "two-inits": ("init and learning_rate hold one number each", "p.safetensors: array init must hold one number"),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_arrays_are_a_one_line_error_never_a_hang(kind):
    arrays, x = _malformed(kind)
    with pytest.raises(ConfigError, match=MALFORMED[kind][0]):
        gbm_predict(arrays, x)


@pytest.mark.parametrize("kind", [k for k, (_, loaded) in MALFORMED.items() if loaded])
def test_malformed_arrays_are_refused_when_loaded(kind):
    arrays, _ = _malformed(kind)
    with pytest.raises(ConfigError, match=MALFORMED[kind][1]):
        check_gbm_arrays(arrays, features=6, where="p.safetensors")


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(tree_feature=np.where(a["tree_feature"] >= 0, 7, a["tree_feature"])),
     "a split reads feature 7, but the model has 6 features"),
    (lambda a: a.update(tree_threshold=np.where(a["tree_feature"] >= 0, np.nan, 0.0)),
     "array tree_threshold holds a number that is not finite"),
    (lambda a: a.update(tree_right=a["tree_right"] + 0.5), "arrays tree_right must hold whole numbers"),
    (lambda a: a.update(tree_value=np.array([["x"]])), "array tree_value must hold numbers"),
    (lambda a: a.update({k: a[k][:, :0] for k in ("tree_feature", "tree_threshold", "tree_left", "tree_right",
                                                   "tree_value")}), "must share one \\[trees, nodes\\] shape"),
])
def test_the_loaders_check_refuses_what_would_misread(change, message):
    model, _ = _fitted()
    arrays = gbm_to_arrays(model)
    change(arrays)
    with pytest.raises(ConfigError, match=message):
        check_gbm_arrays(arrays, features=6)


def test_well_formed_arrays_pass_the_check_unchanged():
    model, held_out = _fitted(subsample=0.8, max_depth=4)  # padded trees of different sizes
    arrays = gbm_to_arrays(model)
    structure = ("tree_feature", "tree_left", "tree_right")  # stored as integers by another writer
    checked = check_gbm_arrays({k: v.astype(np.int32) if k in structure else v for k, v in arrays.items()},
                               features=6)
    assert all(checked[k].dtype == np.float64 for k in checked)
    np.testing.assert_array_equal(gbm_predict(checked, held_out), gbm_predict(arrays, held_out))

"""Accuracy predictors: fitted by cross-validation, stored without pickles, evaluated in NumPy."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ofakit.errors import ArchError, BundleError, ConfigError
from ofakit.predict.accuracy import AccuracyPredictor, _fit, fit_accuracy_predictor, gbm_to_arrays
from ofakit.predict.records import append_record, read_records, spread_over_macs, uniform_grid
from ofakit.space import get_space


def synthetic(space, n, seed=0):
    rng = random.Random(seed)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(n)))
    noise = np.random.default_rng(seed).normal(0, 0.005, len(archs))
    acc = np.array([0.5 + 0.4 * np.tanh(space.macs(a) / 4e5) for a in archs]) + noise
    return archs, acc


def test_fit_ranks_held_out_subnets_and_round_trips(tmp_path):
    space = get_space("tiny")
    archs, acc = synthetic(space, 120)
    pred = fit_accuracy_predictor(space, archs, acc, folds=3, mlp_epochs=40)
    assert pred.meta["chosen"] in ("mlp", "gbm") and set(pred.meta["cv_kendall_tau"]) == {"mlp", "gbm"}
    assert pred.meta["heldout"]["kendall_tau"] > 0.6
    pred.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl"))
    loaded = AccuracyPredictor.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(archs), pred.predict(archs), atol=1e-6)


def test_gbm_arrays_reproduce_sklearn():
    from sklearn.ensemble import GradientBoostingRegressor

    space = get_space("tiny")
    archs, acc = synthetic(space, 80, seed=1)
    x = space.encode(archs)
    model = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0).fit(x, acc)
    ours = AccuracyPredictor("tiny", "gbm", gbm_to_arrays(model))
    np.testing.assert_allclose(ours.predict(archs), model.predict(x), atol=1e-12)


def test_mlp_in_numpy_matches_the_fitted_torch_network():
    import torch

    space = get_space("tiny")
    archs, acc = synthetic(space, 40, seed=2)
    x = space.encode(archs).astype(np.float64)
    arrays = _fit("mlp", x, acc, seed=0, epochs=5)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 400), torch.nn.ReLU(), torch.nn.Linear(400, 400),
                              torch.nn.ReLU(), torch.nn.Linear(400, 400), torch.nn.ReLU(), torch.nn.Linear(400, 1))
    with torch.no_grad():
        for i, layer in enumerate(m for m in net if isinstance(m, torch.nn.Linear)):
            layer.weight.copy_(torch.from_numpy(arrays[f"w{i}"]))
            layer.bias.copy_(torch.from_numpy(arrays[f"b{i}"]))
        expected = net(torch.from_numpy(x).float()).squeeze(1).double().numpy() + arrays["offset"][0]
    np.testing.assert_allclose(AccuracyPredictor("tiny", "mlp", arrays).predict(archs), expected, atol=1e-5)


def test_errors(tmp_path):
    with pytest.raises(BundleError, match="has no accuracy predictor.*ofakit predictor fit --bundle"):
        AccuracyPredictor.load(tmp_path)
    pred = AccuracyPredictor("tiny", "mlp", {"w0": np.zeros((1, 23)), "b0": np.zeros(1)})
    with pytest.raises(ArchError, match="arch of space 'ofa-mbv3-w1.0' given to a predictor for space 'tiny'"):
        pred.predict([get_space("ofa-mbv3-w1.0").largest()])
    with pytest.raises(ConfigError, match="need at least 12"):
        fit_accuracy_predictor(get_space("tiny"), [get_space("tiny").largest()] * 3, [0.5] * 3)


@pytest.mark.parametrize(("info", "arrays", "match"), [
    ({}, None, r"predictor.json: missing key\(s\) 'space', 'kind'$"),
    ({"space": "tiny", "kind": "svm"}, None, r"predictor.json: kind 'svm' is not one of mlp, gbm$"),
    ({"space": "tiny", "kind": "mlp", "meta": {"layers": 0}}, None, r"meta: layers must be a positive integer"),
    ({"space": "tiny", "kind": "mlp"}, b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\"", r"predictor.safetensors: not "
     r"accuracy predictor weights \(safetensors\) \(SafetensorError: "),
    ({"space": "tiny", "kind": "mlp"}, {"w0": np.zeros((4, 23)), "w1": np.zeros((2, 4))},
     r"predictor.safetensors: the last layer has 2 outputs; a predictor has one$"),
    ({"space": "tiny", "kind": "mlp"}, {"w0": np.zeros((1, 5))}, r"layer 0 has weights \(1, 5\) and bias None, "
     r"which do not take the 23 features$"),
    ({"space": "tiny", "kind": "mlp"}, {"w0": np.zeros((4, 23)), "w1": np.array([[0.0, np.nan, 0.0, 0.0]])},
     r"predictor.safetensors: array w1 holds a number that is not finite \(NaN or infinity\); refit the predictor$"),
    ({"space": "tiny", "kind": "mlp"}, {"w0": np.zeros((1, 23)), "b0": np.array([np.inf])}, r"array b0 .* not finite"),
    ({"space": "tiny", "kind": "mlp"}, {"w0": np.zeros((1, 23)), "offset": np.zeros(0)},
     r"array offset must hold one number \(shape \(1,\)\), got shape \(0,\)$"),
    ({"space": "tiny", "kind": "mlp"}, {"w0": np.zeros((1, 23)), "b0": np.zeros(1), "offset": np.zeros((1, 2))},
     r"array offset must hold one number \(shape \(1,\)\), got shape \(1, 2\)$"),
    # MIT layouts: the input width follows the encoding (60 kernel + 60 expand one-hots + one input per resolution)
    ({"space": "ofa-mbv3-w1.0", "kind": "mlp", "encoding": "ofa-tutorial"}, {"w0": np.zeros((1, 100))},
     r"layer 0 has weights \(1, 100\) and bias None, which do not take the 128 features$"),
    ({"space": "ofa-mbv3-w1.0", "kind": "mlp", "encoding": "ofa-nas", "meta": {"mit_resolutions": [160, 224]}},
     {"w0": np.zeros((1, 124))}, r"layer 0 has weights \(1, 124\) and bias None, which do not take the 122 features$"),
    ({"space": "ofa-mbv3-w1.0", "kind": "mlp", "encoding": "ofa-nas", "meta": {"mit_resolutions": [224, 224]}},
     {"w0": np.zeros((1, 122))}, r"meta: mit_resolutions lists a resolution twice: \[224, 224\]"),
    ({"space": "ofa-mbv3-w1.0", "kind": "mlp", "encoding": "ofa-nas"}, {"w0": np.zeros((1, 121))},
     r"an 'ofa-nas' predictor needs its resolution list \(mit_resolutions\)"),
    ({"space": "ofa-mbv3-w1.0", "kind": "mlp", "encoding": "ofa-tutorial", "meta": {"mit_resolutions": [160, 224]}},
     {"w0": np.zeros((1, 122))}, r"the ofa-tutorial encoding has fixed resolution slots"),
    ({"space": "tiny", "kind": "mlp", "encoding": "ofa-tutorial"}, {"w0": np.zeros((1, 128))},
     r"MIT's accuracy predictors encode the OFA MobileNetV3 layout"),
])
def test_a_malformed_predictor_is_one_line_naming_its_file(tmp_path, info, arrays, match):
    from safetensors.numpy import save_file

    good = {"w0": np.zeros((1, 23)), "b0": np.zeros(1)}
    AccuracyPredictor("tiny", "mlp", good).save(tmp_path)
    if isinstance(arrays, bytes):
        (tmp_path / "predictor.safetensors").write_bytes(arrays)
    elif arrays is not None:
        save_file(arrays, str(tmp_path / "predictor.safetensors"))  # (untagged, as files saved before the tag)
    (tmp_path / "predictor.json").write_text(json.dumps(info))
    with pytest.raises((BundleError, ConfigError), match=match) as caught:
        AccuracyPredictor.load(tmp_path)
    assert "\n" not in str(caught.value)


def test_records_spread_and_resume(tmp_path):
    space = get_space("ofa-mbv3-w1.0")
    archs = spread_over_macs(space, 40, random.Random(0))
    macs = np.array([space.macs(a) for a in archs])
    lo, hi = space.macs(space.smallest()), space.macs(space.largest())
    assert len(set(archs)) == 40
    assert np.histogram(macs, bins=4, range=(lo, hi))[0].min() >= 5  # every quarter of the range is covered
    path = tmp_path / "records.jsonl"
    for arch in archs[:3]:
        append_record(path, arch, 0.5)
    with open(path, "a") as fh:
        fh.write('{"arch": {"space": "ofa-mb')  # a line torn by a kill
    assert list(read_records(path)) == archs[:3]
    assert json.loads(path.read_text().splitlines()[0])["top1"] == 0.5


def test_records_keep_every_whole_line_around_an_old_torn_one(tmp_path):
    """An older append left a kill's torn line in the middle of the records, ended by a newline: the records are
    ofakit's own log, so it is skipped wherever it is, and every whole record is read."""
    archs = spread_over_macs(get_space("ofa-mbv3-w1.0"), 3, random.Random(1))
    path = tmp_path / "records.jsonl"
    append_record(path, archs[0], 0.5)
    with open(path, "a") as fh:
        fh.write('{"arch": {"space": "ofa-mb\n')  # torn, then ended by the old append
    append_record(path, archs[1], 0.6)
    append_record(path, archs[2], 0.7)
    assert read_records(path) == dict(zip(archs, (0.5, 0.6, 0.7)))


def test_uniform_grid_covers_every_setting_at_the_range_ends():
    space = get_space("ofa-mbv3-cifar")
    grid = uniform_grid(space)
    assert len(grid) == len(set(grid)) == 3 * 3 * 3 * 3  # kernel x expand x depth x resolution
    assert {a.resolution for a in grid} == {min(space.resolutions), 28, max(space.resolutions)}
    assert space.smallest() in grid and space.largest().depths in {a.depths for a in grid}
    for a in grid:
        space.validate(a)
        assert len(set(a.kernel_sizes)) == len(set(a.expand_ratios)) == len(set(a.depths)) == 1
    assert {a.resolution for a in uniform_grid(space, count=1)} == {min(space.resolutions)}
    assert {a.resolution for a in uniform_grid(get_space("ofa-mbv3-w1.0"), (128, 160, 192, 224))} == {128, 192, 224}
    resnet = uniform_grid(get_space("ofa-resnet50"), count=1)  # one expand ratio, width and depth everywhere
    assert len(resnet) == 3 * 3 * 3 and all(len(set(a.expand_ratios)) == len(set(a.width_mults)) == 1 for a in resnet)


def test_a_loaded_mlp_folds_its_rows_once_until_its_files_change(tmp_path):
    from ofakit.space.genome import Genome

    space = get_space("tiny")
    genome = Genome(space)
    rows = genome.sample(50, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    width = space.encode([space.largest()]).shape[1]

    def saved(scale):
        arrays = {"w0": scale * rng.normal(size=(16, width)), "b0": rng.normal(size=16),
                  "w1": rng.normal(size=(1, 16)), "b1": np.zeros(1)}
        pred = AccuracyPredictor("tiny", "mlp", arrays)
        pred.save(tmp_path)
        return pred

    first = saved(1.0)
    loaded = AccuracyPredictor.load(tmp_path)
    want = first.predict(genome.decode(rows))
    np.testing.assert_allclose(loaded.for_rows(genome)(rows), want, rtol=1e-5, atol=1e-6)
    again = AccuracyPredictor.load(tmp_path).for_rows(genome)  # the kept layers
    np.testing.assert_allclose(again(rows), want, rtol=1e-5, atol=1e-6)
    second = saved(3.0)  # new files at the same place: folded again
    np.testing.assert_allclose(AccuracyPredictor.load(tmp_path).for_rows(genome)(rows),
                               second.predict(genome.decode(rows)), rtol=1e-5, atol=1e-6)


def test_a_save_interrupted_between_its_two_files_is_refused_on_load(tmp_path, monkeypatch):
    """The arrays are replaced, then the kill comes before predictor.json is: the pair does not belong together and
    loading says so (and how to refit) instead of scoring with the new arrays under the old description."""
    import ofakit.predict.accuracy as accuracy
    from ofakit.bundles import resolve_bundle

    width = len(get_space("tiny").feature_names)
    AccuracyPredictor("tiny", "gbm", gbm_to_arrays(_small_gbm(width))).save(tmp_path)
    assert AccuracyPredictor.load(tmp_path).kind == "gbm"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(accuracy, "atomic_write_json", killed)
    mlp = AccuracyPredictor("tiny", "mlp", {"w0": np.ones((4, width)), "b0": np.zeros(4), "w1": np.ones((1, 4)),
                                            "b1": np.zeros(1)}, meta={"layers": 2})
    with pytest.raises(KeyboardInterrupt):
        mlp.save(tmp_path)
    with pytest.raises(BundleError, match=r"predictor.json and .*predictor.safetensors do not belong together .*"
                                          r"refit with `ofakit predictor fit --bundle") as caught:
        AccuracyPredictor.load(tmp_path)
    assert "\n" not in str(caught.value)
    monkeypatch.undo()
    mlp.save(tmp_path)  # a whole save makes a matching pair again
    assert AccuracyPredictor.load(tmp_path).kind == "mlp"
    shipped = resolve_bundle(None)  # saved before the tag: neither file carries it, and it loads as it is
    assert "arrays_digest" not in json.loads((shipped / "predictor.json").read_text())
    assert AccuracyPredictor.load(shipped).kind == "gbm"


def _small_gbm(width, seed=0):
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(seed)
    return GradientBoostingRegressor(n_estimators=5, max_depth=2, random_state=0).fit(
        rng.random((20, width)), rng.random(20))


@pytest.mark.parametrize("top1, shown", [("NaN", "nan"), ("1.5", "1.5"), ("-0.1", "-0.1"), ("Infinity", "inf")])
def test_a_record_whose_top1_is_not_a_fraction_names_its_file_and_line(tmp_path, top1, shown):
    archs = spread_over_macs(get_space("tiny"), 2, random.Random(0))
    path = tmp_path / "records.jsonl"
    append_record(path, archs[0], 0.5)
    with open(path, "a") as fh:
        fh.write(f'{{"arch": {json.dumps(archs[1].to_dict())}, "top1": {top1}}}\n')  # parses: json reads NaN
    with pytest.raises(ConfigError, match=rf"records.jsonl: line 2: top1 {shown} is not a top-1 fraction in \[0, 1\]"):
        read_records(path)


def test_records_hold_one_arch_per_network():
    """In the tiny space many archs differ only in slots their depths skip: the spread and the --uniform merge keep
    one arch per network (`space.key`), so no held-out subnet is a fitted one under another name."""
    from ofakit.predict.records import one_per_network

    space = get_space("tiny")
    archs = spread_over_macs(space, 200, random.Random(0))
    assert len({space.key(a) for a in archs}) == len(archs) > 150
    merged = one_per_network(space, archs + uniform_grid(space))
    assert len({space.key(a) for a in merged}) == len(merged) < len(set(archs + uniform_grid(space)))
    assert merged[: len(archs)] == archs  # the spread first, in its order


def test_cross_validation_ignores_folds_it_cannot_rank(monkeypatch):
    """A kind whose every fold predicts one value (Kendall tau undefined) is never chosen over one that ranks; when
    no kind ranks anything, the fit is refused. 12 records is the least that gives every fold 2 subnets."""
    import ofakit.predict.accuracy as accuracy
    from ofakit.predict.accuracy import min_records

    from sklearn.ensemble import GradientBoostingRegressor

    space = get_space("tiny")
    width = len(space.feature_names)

    def fit(kind, x, y, seed, epochs=100):
        if kind == "mlp":  # a constant: ranks nothing
            return {"w0": np.zeros((1, width)), "b0": np.zeros(1), "offset": np.array([0.5])}
        return gbm_to_arrays(GradientBoostingRegressor(n_estimators=20, max_depth=2, random_state=0).fit(x, y))

    monkeypatch.setattr(accuracy, "_fit", fit)
    archs, acc = synthetic(space, 20, seed=3)
    pred = fit_accuracy_predictor(space, archs, acc)
    assert np.isnan(pred.meta["cv_kendall_tau"]["mlp"]) and pred.meta["chosen"] == "gbm"
    with pytest.raises(ConfigError, match="cross-validation could not rank any subnet"):
        fit_accuracy_predictor(space, archs, np.full(len(archs), 0.5))
    assert min_records() == 12 and min_records(folds=3) == 8

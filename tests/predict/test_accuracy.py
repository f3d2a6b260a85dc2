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
    with pytest.raises(ValueError, match="need at least 10"):
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
])
def test_a_malformed_predictor_is_one_line_naming_its_file(tmp_path, info, arrays, match):
    from safetensors.numpy import save_file

    good = {"w0": np.zeros((1, 23)), "b0": np.zeros(1)}
    AccuracyPredictor("tiny", "mlp", good).save(tmp_path)
    (tmp_path / "predictor.json").write_text(json.dumps(info))
    if isinstance(arrays, bytes):
        (tmp_path / "predictor.safetensors").write_bytes(arrays)
    elif arrays is not None:
        save_file(arrays, str(tmp_path / "predictor.safetensors"))
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

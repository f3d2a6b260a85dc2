"""Learned latency predictor: vectorized features, fitted from records whose truth does not add up, stored as JSON,
refitted when its table changes, resumable measurement (synthetic records: nothing is timed here)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.latency.estimate import LutEstimator
from ofakit.latency.table import Entry, LatencyTable, find_table
from ofakit.latency.measure import MeasuredGroup, ValidateConfig, sample_archs
from ofakit.predict.latency import KINDS, ArchFeatures, LatencyPredictor, fit_latency_predictor, load_predictor
from ofakit.latency.measure import LatencyRecord, measure_latency_records, read_latency_records
from ofakit.metrics import error_metrics
from ofakit.space import get_space

SPACE = "ofa-mbv3-cifar"


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    return find_table("cpu-ort", SPACE)


def truth(table: LatencyTable, archs) -> np.ndarray:
    """End-to-end ms that the LUT sum misses: fused layers save 20 %, and past 1.2 M params the weights leave the
    cache and every extra 0.1 M params costs 0.03 ms."""
    x = ArchFeatures(LutEstimator(table))(archs)
    return 0.8 * x[:, 0] + 0.3 * np.maximum(0.0, x[:, 2] - 1.2)


def records(table: LatencyTable, n: int, seed: int = 0) -> list[LatencyRecord]:
    """`n` subnets measured on a drifting machine: each group of 10 runs 1.0-1.6x slower, reference included."""
    space = get_space(SPACE)
    archs = sample_archs(space, table.resolutions, n, random.Random(seed))
    drift = np.repeat(np.random.default_rng(seed).uniform(1.0, 1.6, -(-n // 10)), 10)[:n]
    return [LatencyRecord(a, float(ms * d), float(table.reference_ms * d))
            for a, ms, d in zip(archs, truth(table, archs), drift)]


@pytest.mark.parametrize("space", [SPACE, "ofa-mbv3-w1.2"])
def test_features_count_macs_and_params_exactly(space):
    device = "cpu-ort" if space == SPACE else "note10"
    features = ArchFeatures(LutEstimator(find_table(device, space)))
    sp = get_space(space)
    archs = sample_archs(sp, find_table(device, space).resolutions[:3], 60, random.Random(3))
    x = features(archs)
    assert x.shape == (60, len(features.names))
    np.testing.assert_allclose(x[:, 1] * 1e6, [sp.macs(a) for a in archs], rtol=1e-12)
    np.testing.assert_allclose(x[:, 2] * 1e6, [sp.params(a) for a in archs], rtol=1e-12)
    np.testing.assert_array_equal(x[:, 5:5 + len(sp.stage_slots)], [a.depths for a in archs])
    np.testing.assert_allclose(x[:, 0], features.lut.estimate_batch(archs))
    used = [[s for s in sp.active_slots(a)] for a in archs]
    np.testing.assert_array_equal(x[:, 4], [len(u) for u in used])
    np.testing.assert_allclose(x[:, -2], [np.mean([a.kernel_sizes[s] for s in u]) for a, u in zip(archs, used)])
    np.testing.assert_allclose(x[:, -1], [np.mean([a.expand_ratios[s] for s in u]) for a, u in zip(archs, used)])


def test_rows_are_estimated_as_their_archs(table):
    """What a search holds (genome rows, also of a genome restricted to some resolutions) gets the same estimates
    as the archs they decode to."""
    import copy

    from ofakit.space.genome import Genome

    pred = fit_latency_predictor(table, records(table, 40), kinds=("gbm",))
    space = get_space(SPACE)
    restricted = copy.copy(space)  # as ofakit.predict.ofa_predictor.predictor_space restricts a search
    restricted.resolutions = tuple(table.resolutions[-1:])
    for genome in (Genome(space), Genome(restricted)):
        rows = genome.sample(300, np.random.default_rng(4))
        np.testing.assert_allclose(pred.estimate_rows(genome, rows, scale=1.2),
                                   pred.estimate_batch(genome.decode(rows), scale=1.2), rtol=1e-12)
    assert pred.estimate_rows(Genome(space), np.zeros((0, Genome(space).width), dtype=np.int64)).shape == (0,)


def test_fit_learns_what_does_not_add_up(table):
    pred = fit_latency_predictor(table, records(table, 60), seed=0)
    held_out = sample_archs(get_space(SPACE), table.resolutions, 200, random.Random(99))
    true = truth(table, held_out)
    ours = error_metrics(pred.estimate_batch(held_out), true)
    lut = error_metrics(LutEstimator(table).estimate_batch(held_out), true)
    assert ours["mape_pct"] < 0.5 * lut["mape_pct"] and ours["within_10pct"] > 0.9 > lut["within_10pct"]
    meta = pred.meta
    assert meta["drift_normalized"] and meta["records"] == 60 and meta["kind"] == pred.kind
    assert set(meta["cv"]) == {"lut", "scale", "ridge", "gbm", "linear"}
    assert meta["cv"][pred.kind]["mape_pct"] == min(meta["cv"][k]["mape_pct"] for k in KINDS)
    assert meta["table"]["file"] == "cpu-ort_ofa-mbv3-cifar.json" and len(meta["fitted_archs"]) == 60
    fitted = records(table, 60)[0].arch
    assert pred.fitted_on(fitted) and not any(pred.fitted_on(a) for a in held_out)


def test_an_affine_truth_is_learned_by_the_linear_kind(table):
    """End-to-end time = 0.9 x LUT sum + 0.02 ms per running block + 0.15 ms per call (a runtime's fixed costs, as
    on the CPU here): no ratio of the LUT sum can express it across small and large subnets; the linear kind can, and
    cross-validation picks it. It never estimates below half the LUT sum, however far it extrapolates."""
    def affine(archs):
        x = ArchFeatures(LutEstimator(table))(archs)
        return 0.9 * x[:, 0] + 0.02 * x[:, 4] + 0.15

    space = get_space(SPACE)
    archs = sample_archs(space, table.resolutions, 40, random.Random(11))
    recs = [LatencyRecord(a, float(ms), float(table.reference_ms)) for a, ms in zip(archs, affine(archs))]
    pred = fit_latency_predictor(table, recs, seed=0)
    assert pred.kind == "linear" and pred.meta["target"] == "measured ms at the table's reference level"
    cv = pred.meta["cv"]
    assert cv["linear"]["mape_pct"] < 0.5 and cv["linear"]["within_10pct"] == 1.0
    assert cv["linear"]["mape_pct"] < 0.5 * min(cv[k]["mape_pct"] for k in ("scale", "ridge"))
    held_out = sample_archs(space, table.resolutions, 200, random.Random(12))
    assert error_metrics(pred.estimate_batch(held_out), affine(held_out))["mape_pct"] < 0.5
    x = pred.features(held_out)
    np.testing.assert_array_equal(pred.estimate_batch(held_out), np.maximum(
        (x - pred.arrays["mean"]) / pred.arrays["std"] @ pred.arrays["coef"] + pred.arrays["intercept"][0],
        0.5 * x[:, 0]))
    pred.arrays["intercept"] = np.array([-100.0])  # far below anything measured
    np.testing.assert_array_equal(pred.estimate_batch(held_out), 0.5 * x[:, 0])


@pytest.mark.parametrize("kind", KINDS)
def test_json_round_trip_predicts_the_same(table, tmp_path, kind):
    pred = fit_latency_predictor(table, records(table, 40), kinds=(kind,))
    path = pred.save(tmp_path / "cpu-ort_ofa-mbv3-cifar.predictor.json")
    data = json.loads(path.read_text())
    assert data["format"] == "ofakit-latency-predictor" and data["model"]["kind"] == kind
    loaded = LatencyPredictor.load(path, table)
    archs = sample_archs(get_space(SPACE), table.resolutions, 300, random.Random(5))
    np.testing.assert_array_equal(loaded.estimate_batch(archs), pred.estimate_batch(archs))
    assert list(tmp_path.iterdir()) == [path]  # nothing else (no pickle, no temporary file) is left


def test_gbm_in_numpy_matches_scikit_learn(table):
    from sklearn.ensemble import GradientBoostingRegressor

    from ofakit.predict.latency import GBM

    recs = records(table, 40)
    pred = fit_latency_predictor(table, recs, kinds=("gbm",), seed=2)
    x = pred.features([r.arch for r in recs])
    y = np.array([r.measured_ms * table.reference_ms / r.reference_ms for r in recs])
    model = GradientBoostingRegressor(**GBM, random_state=2).fit(x, np.log(y / x[:, 0]))
    archs = sample_archs(get_space(SPACE), table.resolutions, 200, random.Random(6))
    xs = pred.features(archs)
    np.testing.assert_allclose(pred.estimate_batch(archs), xs[:, 0] * np.exp(model.predict(xs)), rtol=1e-12)


def test_batch_equals_one_by_one_and_scale_multiplies(table):
    pred = fit_latency_predictor(table, records(table, 40))
    archs = sample_archs(get_space(SPACE), table.resolutions, 50, random.Random(7))
    batch = pred.estimate_batch(archs, scale=1.3)
    np.testing.assert_allclose(batch, [pred.estimate(a, scale=1.3) for a in archs], rtol=1e-12)
    np.testing.assert_allclose(batch, 1.3 * pred.estimate_batch(archs), rtol=1e-12)
    assert pred.estimate_batch([]).shape == (0,)


def test_fit_mistakes(table):
    with pytest.raises(ConfigError, match="need at least 8 measured subnets to fit a latency predictor, got 5"):
        fit_latency_predictor(table, records(table, 5))
    with pytest.raises(ConfigError,
                       match=r"unknown latency predictor kind\(s\) 'mlp'; known: scale, ridge, gbm, linear"):
        fit_latency_predictor(table, records(table, 10), kinds=("mlp",))
    few = fit_latency_predictor(table, records(table, 12))
    assert set(few.meta["cv"]) == {"lut", "scale", "ridge", "linear"}  # too few records for trees


def test_a_predictor_of_another_table_version_is_refused(table, tmp_path, monkeypatch):
    changed = LatencyTable.from_dict(table.to_dict())
    key = next(iter(changed.entries[32]))
    changed.put(32, key, Entry(mean=1.0, median=1.0, p10=1.0))
    changed.save(tmp_path / "cpu-ort_ofa-mbv3-cifar.json")
    fit_latency_predictor(table, records(table, 10)).save(tmp_path / "cpu-ort_ofa-mbv3-cifar.predictor.json")
    monkeypatch.setenv("OFAKIT_TABLES_PATH", str(tmp_path))
    with pytest.raises(LatencyLookupError, match="was fitted against another version of table 'cpu-ort_ofa-mbv3-cifar'"
                                                 r".*refit it: ofakit latency fit --device cpu-ort"):
        load_predictor("cpu-ort", SPACE)
    with pytest.warns(UserWarning, match="using the LUT sum"):
        assert isinstance(load_predictor("cpu-ort", SPACE, fallback=True), LutEstimator)


def test_validation_subnets_skip_the_fitted_ones(table):
    pred = fit_latency_predictor(table, records(table, 10))  # the first 10 subnets of seed 0
    fitted = {r.arch for r in records(table, 10)}
    again = sample_archs(get_space(SPACE), table.resolutions, 10, random.Random(0), exclude=pred.fitted_on)
    assert len(again) == 10 and not set(again) & fitted


def test_measuring_resumes_where_a_killed_run_stopped(table, tmp_path, monkeypatch):
    from ofakit.latency import measure
    from ofakit.latency.devices import get_device

    measured: list = []

    def fake_groups(device, space, table, archs, cfg):
        for start in range(0, len(archs), cfg.group):
            chunk = list(archs[start:start + cfg.group])
            if fake_groups.kill_after is not None and len(measured) >= fake_groups.kill_after:
                raise KeyboardInterrupt  # as a Ctrl-C during the second group
            measured.extend(chunk)
            ms = list(truth(table, chunk))
            yield MeasuredGroup(chunk, (ms, ms), (0.6, 0.6))

    monkeypatch.setattr(measure, "measure_groups", fake_groups)
    space = get_space(SPACE)
    archs = sample_archs(space, table.resolutions, 25, random.Random(0))
    path = tmp_path / "r.jsonl"
    cfg = ValidateConfig(group=10)
    fake_groups.kill_after = 10
    with pytest.raises(KeyboardInterrupt):
        measure_latency_records(get_device("cpu-ort"), space, table, archs, path, cfg)
    assert list(read_latency_records(path, "cpu-ort", SPACE)) == archs[:10]
    fake_groups.kill_after = None
    measured.clear()
    done = measure_latency_records(get_device("cpu-ort"), space, table, archs, path, cfg)
    assert measured == archs[10:] and [r.arch for r in done] == archs
    assert done[3].reference_ms == 0.6 and done[3].measured_ms == pytest.approx(truth(table, [archs[3]])[0])
    with pytest.raises(ConfigError, match=r"r\.jsonl: line 1: a record of device 'cpu-ort', not 'note10'; pass "
                                          r"another --records file$"):
        read_latency_records(path, "note10", SPACE)


def test_linear_kind_fits_relative_error():
    """The linear kind weighs each subnet by 1 / ms^2 (least squares on the relative error): a weighted ridge equals
    the plain one on repeated rows, and the fit favours the small subnets that relative error judges hardest."""
    from ofakit.predict.latency import _fit_model, _predict, _ridge

    rng = np.random.default_rng(0)
    x = rng.uniform(1, 10, (40, 3))
    t = x @ [0.5, 0.2, 0.1] + rng.normal(0, 0.3, 40)
    w = rng.integers(1, 4, 40).astype(float)
    weighted = _ridge(x, t, 1e-9, weights=w)  # (almost) no penalty: weighted least squares
    repeated = _ridge(np.repeat(x, w.astype(int), axis=0), np.repeat(t, w.astype(int)), 1e-9)
    z = (x - weighted["mean"]) / weighted["std"]
    zr = (x - repeated["mean"]) / repeated["std"]
    np.testing.assert_allclose(z @ weighted["coef"] + weighted["intercept"][0],
                               zr @ repeated["coef"] + repeated["intercept"][0], rtol=1e-6)
    # latency = 0.1 ms + 1.0 x LUT for small nets, with a kink that an affine model cannot follow for large ones
    lut = np.linspace(0.2, 5.0, 60)
    y = 0.1 + lut + 0.3 * np.maximum(lut - 3.0, 0.0)
    feats = np.column_stack([lut, np.zeros(60)])
    rel = _predict("linear", _fit_model("linear", feats, y, 0), feats) / y - 1
    plain = _ridge(feats, y, 0.1)
    rel_plain = ((feats - plain["mean"]) / plain["std"]) @ plain["coef"] + plain["intercept"][0]
    rel_plain = np.maximum(rel_plain, 0.5 * lut) / y - 1
    assert np.abs(rel).mean() < np.abs(rel_plain).mean() and np.abs(rel[:10]).max() < np.abs(rel_plain[:10]).max()

"""Op model: layer counts, a fit that recovers a device whose layers are linear in them (and so answers for another
width and resolution exactly), held-out errors, exact entries first, JSON round trip and its errors. The tables are
made here from known coefficients."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.latency.estimate import LutEstimator
from ofakit.latency.layers import distinct_layers
from ofakit.latency.table import Entry, LatencyTable, layer_key
from ofakit.predict.op_estimator import OpModelEstimator
from ofakit.predict.op_model import FEATURES, OpModel, fit_op_model, layer_features
from ofakit.space import LayerShape, get_space
from ofakit.space.mbconv import se_channels

# ms per unit: a per-layer cost, MACs per op type, element counts; every feature used by ofa-mbv3 spaces
TRUE = dict(zip(FEATURES, (0.004, 4e-8, 5e-8, 9e-8, 1.6e-7, 1.8e-7, 4e-7, 9e-7, 0.01, 8e-7, 8e-7, 1.5e-6, 3e-6,
                           2e-7)))
COEF = np.array([TRUE[f] for f in FEATURES])


def synthetic_table(space: str = "ofa-mbv3-w1.2", resolutions=(160, 176, 192, 208, 224), *, noise: float = 0.0,
                    overhead: float = 0.0, device: str = "phone") -> LatencyTable:
    """Every layer of `space` at `resolutions`, timed as COEF . counts (times 1 + noise * N(0, 1)), plus a per-call
    `overhead` that every entry includes once."""
    rng = np.random.default_rng(0)
    table = LatencyTable({"device": device, "space": space, "call_overhead_ms": overhead})
    for r in resolutions:
        for layer in distinct_layers(get_space(space), r):
            ms = float(layer_features(layer) @ COEF) * (1 + noise * rng.normal()) + overhead
            table.put(r, layer_key(layer), Entry(ms, count=100))
    return table


def archs(space: str, n: int, seed: int = 0):
    sp = get_space(space)
    rng = random.Random(seed)
    return [sp.sample(rng) for _ in range(n)]


def true_ms(archs_) -> np.ndarray:
    return np.array([sum(layer_features(l) @ COEF for l in get_space(a.space).layers(a)) for a in archs_])


def test_layer_counts_of_an_se_hswish_block():
    layer = LayerShape("mbconv", (8, 8, 16), (4, 4, 24), kernel=5, stride=2, mid=48, se=True, act="hswish")
    f = dict(zip(FEATURES, layer_features(layer)))
    assert f["pointwise_macs"] == 8 * 8 * 16 * 48 + 4 * 4 * 48 * 24
    assert f["depthwise5_macs"] == 4 * 4 * 48 * 25 and f["depthwise3_macs"] == f["depthwise7_macs"] == 0
    assert f["se_macs"] == 2 * 48 * se_channels(48) and f["se_blocks"] == 1 and f["se_elements"] == 4 * 4 * 48
    assert f["act_elements"] == f["hswish_elements"] == 8 * 8 * 48 + 4 * 4 * 48
    assert f["layers"] == 1 and f["residual_elements"] == 0
    block = LayerShape("mbconv", (4, 4, 24), (4, 4, 24), kernel=3, mid=72, act="relu", skip=True)
    f = dict(zip(FEATURES, layer_features(block)))
    assert f["residual_elements"] == 4 * 4 * 24 and f["hswish_elements"] == 0 and f["se_blocks"] == 0
    # a 1x1 conv on a map is pointwise; on a pooled vector it is a matrix-vector product like the classifier
    assert dict(zip(FEATURES, layer_features(LayerShape("feature_mix", (7, 7, 320), (7, 7, 1280), kernel=1))))[
        "pointwise_macs"] == 7 * 7 * 320 * 1280
    assert dict(zip(FEATURES, layer_features(LayerShape("feature_mix", (1, 1, 960), (1, 1, 1280), kernel=1))))[
        "fc_macs"] == 960 * 1280


@pytest.mark.parametrize("layer, match", [
    (LayerShape("bottleneck", (56, 56, 64), (56, 56, 256), kernel=3, mid=64), "not 'bottleneck'"),
    (LayerShape("mbconv", (8, 8, 16), (8, 8, 16), kernel=9, mid=48), "not 9"),
])
def test_layers_it_does_not_describe_are_refused(layer, match):
    with pytest.raises(LatencyLookupError, match=match):
        layer_features(layer)


def test_fit_recovers_the_device_and_answers_for_another_width_and_resolution():
    model = fit_op_model(synthetic_table(), spaces=("ofa-mbv3-w1.2", "ofa-mbv3-w1.0"), resolution_range=(128, 260))
    assert model.coef == pytest.approx(COEF, rel=1e-5)
    assert model.meta.unidentified == () and model.meta.fit["max_pct"] < 1e-3
    assert "whole resolutions" in model.meta.held_out["scheme"] and model.meta.held_out["max_pct"] < 1e-3
    for space, res in (("ofa-mbv3-w1.0", None), ("ofa-mbv3-w1.2", 260)):  # no entry of these in the table
        batch = archs(space, 20)
        if res:
            batch = [type(a)(a.space, res, a.depths, a.kernel_sizes, a.expand_ratios) for a in batch]
        est = OpModelEstimator(model, get_space(space)).estimate_batch(batch)
        assert est == pytest.approx(true_ms(batch), rel=1e-5)


def test_held_out_error_is_measured_on_entries_left_out():
    """With noise, entries left out of the fit are predicted worse than those fitted; too few resolutions to leave
    whole ones out falls back to random folds of entries."""
    model = fit_op_model(synthetic_table(noise=0.05))
    assert model.meta.held_out["mape_pct"] > model.meta.fit["mape_pct"] > 2
    few = fit_op_model(synthetic_table(resolutions=(160, 224), noise=0.05))
    assert "random folds" in few.meta.held_out["scheme"]


def test_features_no_entry_exercises_are_unidentified():
    """A ProxylessNAS table has no h-swish and no squeeze-excite: those costs are not guessed."""
    model = fit_op_model(synthetic_table("proxyless-mobile", (224,)))
    assert set(model.meta.unidentified) == {"hswish_elements", "se_macs", "se_blocks", "se_elements"}
    assert all(model.coef[FEATURES.index(f)] == 0 for f in model.meta.unidentified)


def test_a_layer_timed_with_the_next_one_is_fitted_as_their_sum():
    """MIT's Pixel 1 table times pooling and classifier as one entry (classifier: 0 ms, count 0)."""
    table = synthetic_table("proxyless-mobile", (224,))
    section = table.entries[224]
    pool = next(k for k in section if k.startswith("pool/"))
    classifier = next(k for k in section if k.startswith("classifier/"))
    section[pool] = Entry(section[pool].mean + section[classifier].mean, count=100)
    section[classifier] = Entry(0.0, count=0)
    model = fit_op_model(table)
    assert model.meta.fit["entries"] == len(section) - 1 and model.meta.fit["max_pct"] < 1e-3


def test_exact_entries_win_then_the_same_layer_elsewhere_then_the_model():
    table = synthetic_table()
    model = fit_op_model(table)
    key = next(k for k in table.entries[192] if k.startswith("mbconv/"))
    table.entries[192][key] = Entry(10 * table.entries[192][key].mean, count=100)  # a measurement the model misses
    sp = get_space("ofa-mbv3-w1.2")
    batch = [a for a in archs("ofa-mbv3-w1.2", 200) if a.resolution in table.entries]
    est = OpModelEstimator(model, sp).estimate_batch(batch)
    assert est == pytest.approx(LutEstimator(table, sp).estimate_batch(batch), rel=1e-9)
    classifier = next(layer for layer in sp.layers(batch[0]) if layer.op == "classifier")
    for r, ms in zip(table.resolutions, (1.0, 2.0, 3.0, 4.0, 5.0)):
        table.put(r, layer_key(classifier), Entry(ms, count=100))
    model = fit_op_model(table)
    assert model.layer_ms(196, classifier) == pytest.approx(3.0)  # measured at every other resolution: their mean
    assert OpModel(model.coef, model.meta).layer_ms(196, classifier) == pytest.approx(model.predict(classifier))


def test_json_round_trip_and_a_changed_table_needs_a_refit(tmp_path):
    table = synthetic_table()
    model = fit_op_model(table)
    path = model.save(tmp_path / "phone.opmodel.json")
    assert not list(tmp_path.glob("*.pkl")) and json.loads(path.read_text())["format"] == "ofakit-op-model"
    loaded = OpModel.load(path).with_table(table)
    assert loaded.coef.tolist() == model.coef.tolist() and loaded.meta == model.meta
    table.put(160, next(iter(table.entries[160])), Entry(99.0, count=1))
    with pytest.raises(LatencyLookupError, match="fitted on another version of table 'phone_ofa-mbv3-w1.2'.*"
                                                 "python -m ofakit.predict.op_model --device phone"):
        loaded.with_table(table)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["model"].update(coef=[-1.0] * len(FEATURES)), "non-negative coefficients"),
    (lambda d: d["model"].update(features=["macs"]), "refit it"),
    (lambda d: d["meta"].update(colour="red"), "unknown key.*'colour'"),
    (lambda d: d["meta"].update(resolution_range=[224, 160]), "0 < low <= high"),
    (lambda d: d.update(format="something"), "not an ofakit op model"),
])
def test_malformed_files_are_one_line_errors(tmp_path, edit, match):
    data = fit_op_model(synthetic_table()).to_dict()
    edit(data)
    path = tmp_path / "m.opmodel.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=match) as info:
        OpModel.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)

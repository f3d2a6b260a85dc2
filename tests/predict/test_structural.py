"""Structural latency model: features from layer shapes, trees fitted on synthetic latencies from a known formula,
the shipped GPU models and their devices, and (when ../shared is there) their held-out error on HELP's subnets."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.latency.devices import get_device
from ofakit.metrics import error_metrics, spearman
from ofakit.predict.structural import (HELP_BATCHES, HELP_GPUS, SUFFIX, StructuralEstimator, StructuralFeatures,
                                       fit_structural, help_device, held_out_split, layer_ops, load_structural,
                                       read_help_gpus)
from ofakit.space import get_space
from ofakit.space.genome import Genome

SPACE = "ofa-mbv3-w1.2"
HELP = Path(os.environ.get("OFAKIT_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) \
    / "latency" / "help-ofa-gpus"


def _archs(n: int, seed: int = 0) -> list:
    space, rng = get_space(SPACE), random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


def _synthetic_ms(space, archs) -> np.ndarray:
    """A GPU-like formula: a cost per launched operation plus MACs, times a little multiplicative noise."""
    ops = np.array([sum(layer_ops(x) for x in space.layers(a)) for a in archs], dtype=np.float64)
    macs = np.array([space.macs(a) for a in archs], dtype=np.float64)
    noise = np.exp(np.random.default_rng(1).normal(0, 0.02, len(archs)))
    return (0.02 * ops + macs / 1e8) * noise


def test_features_match_layer_shapes():
    space = get_space(SPACE)
    archs = _archs(20)
    feats = StructuralFeatures(space)
    x = feats.of_archs(archs)
    col = {n: i for i, n in enumerate(feats.names)}
    assert np.allclose(x[:, col["macs"]], [space.macs(a) / 1e6 for a in archs])
    assert np.allclose(x[:, col["ops"]], [sum(layer_ops(layer) for layer in space.layers(a)) for a in archs])
    assert np.array_equal(x[:, col["blocks"]], [sum(a.depths) for a in archs])
    genome = Genome(space)
    assert np.allclose(feats.of_rows(genome, genome.encode(archs)), x)


def test_skipped_slots_do_not_change_features():
    space = get_space(SPACE)
    a = space.smallest()  # depth 2 everywhere: slots 2, 3 of each stage are skipped
    b = type(a)(a.space, a.resolution, a.depths, (7,) * 20, (6,) * 20)
    b = type(a)(a.space, a.resolution, a.depths,
                tuple(k if i % 4 < 2 else 7 for i, k in enumerate(a.kernel_sizes)),
                tuple(e if i % 4 < 2 else 6 for i, e in enumerate(a.expand_ratios)))
    feats = StructuralFeatures(space)
    assert np.array_equal(feats.of_archs([a]), feats.of_archs([b]))


def test_refuses_a_non_mbconv_space():
    with pytest.raises(ConfigError, match="describes MBConv spaces"):
        StructuralFeatures(get_space("ofa-resnet50"))


def test_fit_on_a_known_formula_generalizes_and_round_trips(tmp_path):
    space = get_space(SPACE)
    archs = _archs(700)
    ms = _synthetic_ms(space, archs)
    model = fit_structural(space, archs, ms, device="synthetic-gpu", held_out=200, iterations=150)
    held = model.meta["held_out"]
    assert held["subnets"] == 200 and held["within_10pct"] > 0.95 and held["spearman"] > 0.95
    _, test = held_out_split(700, 200)
    assert not any(model.fitted_on(archs[i]) for i in test)
    assert model.fitted_on(archs[int(np.setdiff1d(np.arange(700), test)[0])])
    path = model.save(tmp_path / f"synthetic-gpu{SUFFIX}")
    again = StructuralEstimator.load(path)
    fresh = _archs(50, seed=5)
    assert np.allclose(again.estimate_batch(fresh), model.estimate_batch(fresh), rtol=1e-6)
    genome = Genome(space)
    assert np.allclose(again.estimate_rows(genome, genome.encode(fresh)), again.estimate_batch(fresh))
    assert again.estimate(fresh[0]) == pytest.approx(float(again.estimate_batch(fresh[:1])[0]))
    assert again.additive() is None and again.table is None


def test_fit_needs_enough_records():
    space = get_space(SPACE)
    with pytest.raises(ConfigError, match="at least"):
        fit_structural(space, _archs(30), np.ones(30), device="x", held_out=20)


def test_out_of_range_resolution_names_what_to_measure(tmp_path):
    space = get_space(SPACE)
    archs = [a for a in _archs(400) if a.resolution <= 200]
    model = fit_structural(space, archs, _synthetic_ms(space, archs), device="synthetic-gpu", held_out=100,
                           iterations=50)
    big = type(archs[0])(SPACE, 224, archs[0].depths, archs[0].kernel_sizes, archs[0].expand_ratios)
    with pytest.raises(LatencyLookupError, match="160-200.*224 is outside.*ofakit latency adapt"):
        model.estimate(big)


def test_malformed_model_file_is_one_line(tmp_path):
    path = tmp_path / f"x{SUFFIX}"
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not an ofakit structural latency model"):
        StructuralEstimator.load(path)


@pytest.mark.parametrize("gpu", sorted(HELP_GPUS))
@pytest.mark.parametrize("batch", HELP_BATCHES)
def test_shipped_gpu_devices_have_models(gpu, batch):
    name = help_device(gpu, batch)
    device = get_device(name)
    assert device.kind == "gpu" and device.backend.batch == batch
    model = load_structural(name, SPACE)
    meta = model.meta
    assert meta["records"] == 4000 and meta["held_out"]["subnets"] == 1000
    assert "MIT" in meta["license"] and "HayeonLee" in meta["attribution"] and "width" in meta["width_note"]
    est = model.estimate_batch(_archs(10))
    assert np.all((est > 1) & (est < 500))


def test_batch_one_is_the_plain_gpu_name():
    for stem in HELP_GPUS.values():
        assert get_device(stem).name == f"{stem}-b1"


def test_other_space_is_an_error_naming_adapt():
    with pytest.raises(LatencyLookupError, match="serves space 'ofa-mbv3-w1.2', not 'ofa-mbv3-w1.0'.*latency adapt"):
        load_structural("v100", "ofa-mbv3-w1.0")


needs_help = pytest.mark.skipif(not (HELP / "archs.json").is_file(),
                                reason=f"HELP's GPU measurements not found at {HELP} (../shared/data is not part of "
                                       "a user's clone)")


@needs_help
def test_shipped_models_reproduce_their_held_out_error_on_help_data():
    archs, latencies = read_help_gpus(HELP)
    _, test = held_out_split(len(archs))
    feats = StructuralFeatures(get_space(SPACE))
    x = feats.of_archs([archs[i] for i in test])
    for (gpu, batch), ms in latencies.items():
        model = load_structural(help_device(gpu, batch), SPACE)
        got = error_metrics(model.predict(x), ms[test])
        assert got["within_10pct"] == pytest.approx(model.meta["held_out"]["within_10pct"], abs=1e-3)
        assert spearman(model.predict(x), ms[test]) > 0.75
        assert not any(model.fitted_on(archs[i]) for i in test[:50])


def test_complete_tree_walk_matches_the_stored_trees():
    from ofakit.predict.trees import gbm_predict

    model = load_structural("rtx2080ti-b32", SPACE)
    x = model.features.of_archs(_archs(300, seed=9))
    assert np.allclose(model.predict(x), np.exp(gbm_predict(model.arrays, x)), rtol=1e-12)

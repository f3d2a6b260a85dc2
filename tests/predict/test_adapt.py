"""Few-shot adaptation: a new device from ~20 measured subnets over source models, on synthetic latencies from known
formulas; saving, loading and the source check; the shipped GPU models as sources (no data needed)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ofakit.errors import ArchError, ConfigError, LatencyLookupError
from ofakit.metrics import error_metrics
from ofakit.latency.measure import LatencyRecord
from ofakit.predict.adapt import SUFFIX, AdaptedEstimator, _alone, _towards, adapt, describe, fit_combination, \
    source_entry
from ofakit.predict.structural import StructuralFeatures, load_structural
from ofakit.space import get_space
from ofakit.space.genome import Genome

SPACE = "ofa-mbv3-w1.2"


class Formula:
    """An estimator computing a known formula of the structural features (ms): a source model for the tests."""

    table = None

    def __init__(self, name: str, launch: float, per_gmac: float) -> None:
        self.name, self.launch, self.per_gmac = name, launch, per_gmac
        self.features = StructuralFeatures(get_space(SPACE))
        self.col = {n: i for i, n in enumerate(self.features.names)}

    def _ms(self, x: np.ndarray) -> np.ndarray:
        return self.launch * x[:, self.col["ops"]] + self.per_gmac * x[:, self.col["macs"]] / 1e3

    def estimate_batch(self, archs, *, scale=1.0):
        return scale * self._ms(self.features.of_archs(archs))

    def estimate_rows(self, genome, rows, *, scale=1.0):
        return scale * self._ms(self.features.of_rows(genome, rows))


def _archs(n: int, seed: int) -> list:
    space, rng = get_space(SPACE), random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


SOURCES = {"launch-bound": Formula("structural", 0.03, 2.0), "compute-bound": Formula("structural", 0.001, 40.0)}


def _target(archs, seed: int = 3, outliers: int = 0) -> np.ndarray:
    """1.7x the launch-bound source, 2 % noise, and `outliers` timings disturbed by +30-80 %."""
    rng = np.random.default_rng(seed)
    ms = 1.7 * SOURCES["launch-bound"].estimate_batch(archs) * np.exp(rng.normal(0, 0.02, len(archs)))
    ms[:outliers] *= rng.uniform(1.3, 1.8, outliers)
    return ms


@pytest.mark.parametrize("outliers", [0, 5])
def test_twenty_records_recover_the_device_despite_disturbed_timings(outliers):
    fit_archs, test_archs = _archs(20, 0), _archs(300, 1)
    records = [LatencyRecord(a, float(m)) for a, m in zip(fit_archs, _target(fit_archs, outliers=outliers))]
    model = adapt("new-gpu", SPACE, records, SOURCES)
    got = error_metrics(model.estimate_batch(test_archs), _target(test_archs, seed=4))
    assert got["within_10pct"] > 0.9 and got["spearman"] > 0.95
    assert model.meta["records"] == 20 and [s["device"] for s in model.meta["sources"]] == list(SOURCES)
    assert "fold" in model.meta["cv"]["method"] and model.meta["cv"]["within_10pct"] >= 0.6
    assert all(model.fitted_on(a) for a in fit_archs) and not model.fitted_on(test_archs[0])
    genome = Genome(get_space(SPACE))
    assert np.allclose(model.estimate_rows(genome, genome.encode(test_archs)), model.estimate_batch(test_archs))


def test_combination_picks_a_mix_when_the_device_is_one():
    archs = _archs(40, 2)
    z = np.log(np.column_stack([s.estimate_batch(archs) for s in SOURCES.values()]))
    t = 0.5 * z[:, 0] + 0.5 * z[:, 1] + 0.2
    name, intercept, coef, scores = fit_combination(z, t)
    assert name.startswith("towards:") and np.isclose(coef.sum(), 1.0) and coef.min() > 0.3
    assert np.abs(intercept + z @ coef - t).max() < 0.05 and min(scores.values()) < 0.02


def test_a_second_cluster_of_timings_leaves_the_main_one_centred():
    """40 % of the subnets 22 % slower (say, a clock state): a fit for the mean lands between the clusters and puts
    the main one ~4 % high; the low-quantile weights and the mode shift keep it centred."""
    def timings(archs, seed):
        rng = np.random.default_rng(seed)
        slow = rng.random(len(archs)) < 0.4
        return _target(archs, seed) * np.where(slow, 1.22, 1.0), slow

    fit_archs, test_archs = _archs(20, 10), _archs(300, 1)
    ms, _ = timings(fit_archs, 0)
    model = adapt("new-gpu", SPACE, [LatencyRecord(a, float(m)) for a, m in zip(fit_archs, ms)], SOURCES)
    test_ms, slow = timings(test_archs, 99)
    pred = model.estimate_batch(test_archs)
    assert np.median(np.abs(pred[~slow] / test_ms[~slow] - 1)) < 0.02


@pytest.mark.parametrize("make", [lambda n: _alone(1), lambda n: _towards(0, 1.0), lambda n: _towards(1, 10.0)])
def test_masked_fits_equal_fits_on_the_kept_records(make):
    archs = _archs(15, 11)
    z = np.log(np.column_stack([s.estimate_batch(archs) for s in SOURCES.values()]))
    t = np.log(_target(archs, outliers=3))
    fit = make(z.shape[1])
    b, coef = fit(z, t, ~np.eye(len(t), dtype=bool))  # leave-one-out, all at once
    for i in (0, 7, 14):
        keep = np.arange(len(t)) != i
        bi, ci = fit(z[keep], t[keep], np.ones((1, len(t) - 1), dtype=bool))
        assert np.isclose(b[i], bi[0]) and np.allclose(coef[i], ci[0])


def test_save_load_and_a_changed_source(tmp_path):
    src = load_structural("v100-b32", SPACE)
    archs = _archs(12, 5)
    ms = 0.8 * src.estimate_batch(archs)
    model = adapt("my-gpu", SPACE, [LatencyRecord(a, float(m)) for a, m in zip(archs, ms)], {"v100-b32": src})
    assert model.meta["sources"][0]["sha256"] == source_entry("v100-b32", src)["sha256"]
    path = model.save(tmp_path / f"my-gpu{SUFFIX}")
    again = AdaptedEstimator.load(path, lambda device, space: load_structural(device, space))
    fresh = _archs(20, 6)
    assert np.allclose(again.estimate_batch(fresh), 0.8 * src.estimate_batch(fresh), rtol=0.02)
    assert describe(again)["records"] == 12 and describe(again)["sources"] == ["v100-b32"]
    data = json.loads(path.read_text())
    data["meta"]["sources"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyLookupError, match="changed since this model was adapted.*latency adapt"):
        AdaptedEstimator.load(path, lambda device, space: load_structural(device, space))


@pytest.mark.parametrize(("drop", "wrong"), [("records", "records"), ("cv", "cv"), ("device", "device")])
def test_a_model_file_without_what_a_report_reads_is_refused_on_load(tmp_path, drop, wrong):
    """`ofakit devices` describes a loaded model by its device, records and cross-validated error: a file lacking
    one is a one-line error naming it at load, not a KeyError later."""
    src = load_structural("v100-b32", SPACE)
    archs = _archs(5, 3)
    model = adapt("my-gpu", SPACE, [LatencyRecord(a, float(m)) for a, m in zip(archs, src.estimate_batch(archs))],
                  {"v100-b32": src})
    path = model.save(tmp_path / f"my-gpu{SUFFIX}")
    data = json.loads(path.read_text())
    del data["meta"][drop]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=rf"my-gpu\.adapted\.json: malformed adapted latency model .*; wrong: "
                                          rf"{wrong}\)$"):
        AdaptedEstimator.load(path, lambda device, space: load_structural(device, space))


def test_too_few_records_or_no_source():
    records = [LatencyRecord(a, 5.0) for a in _archs(2, 7)]
    with pytest.raises(ConfigError, match="at least 3 measured subnets"):
        adapt("x", SPACE, records, SOURCES)
    with pytest.raises(ConfigError, match="no source device"):
        adapt("x", SPACE, [LatencyRecord(a, 5.0) for a in _archs(5, 7)], {})


def test_an_arch_of_another_space_is_refused():
    bad = [LatencyRecord(a, 5.0) for a in _archs(4, 9)]
    bad[0] = LatencyRecord(type(bad[0].arch)(SPACE, 200, (2, 2, 2, 2, 2), (9,) * 20, (3,) * 20), 5.0)
    with pytest.raises(ArchError, match="kernel size 9"):
        adapt("x", SPACE, bad, SOURCES)

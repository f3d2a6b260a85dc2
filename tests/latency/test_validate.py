"""`validate`: random subnets measured end to end (interleaved, two passes) against the estimators (tiny space)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ofakit.errors import ConfigError
from ofakit.latency.devices import get_device
from ofakit.latency.validate import ValidateConfig, flops_linear, validate
from ofakit.metrics import error_metrics, spearman
from ofakit.space import get_space


def test_accuracy_metrics():
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    m = error_metrics(np.array([1.05, 2.5, 2.9, 4.0]), measured)
    assert m["within_10pct"] == 0.75
    assert m["mape_pct"] == pytest.approx(100 * (0.05 + 0.25 + 0.1 / 3 + 0) / 4)
    assert m["spearman"] == pytest.approx(1.0)
    assert spearman(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(-1.0)


def test_flops_linear_is_fitted_out_of_fold():
    macs = np.arange(1.0, 21.0)
    measured = 2.0 * macs + 1.0
    np.testing.assert_allclose(flops_linear(macs, measured), measured)


def test_flops_linear_never_fits_the_subnet_it_predicts():
    """Each prediction comes from a line through the other subnets only: with 3, the line through the other two;
    with 2, one other subnet fixes no line, and the baseline is refused rather than fitted on the subnet itself."""
    macs, measured = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 4.0])
    want = [np.polyval(np.polyfit(np.delete(macs, i), np.delete(measured, i), 1), macs[i]) for i in range(3)]
    np.testing.assert_allclose(flops_linear(macs, measured), want)
    with pytest.raises(ConfigError, match=r"the FLOPs-linear baseline needs at least 3 subnets .*, got 2$"):
        flops_linear(macs[:2], measured[:2])


@pytest.mark.parametrize("samples", [2, 3])
def test_validate_reports_the_flops_baseline_from_3_subnets(monkeypatch, samples):
    import ofakit.latency.validate as validating
    from ofakit.latency.measure import MeasuredGroup
    from ofakit.latency.table import find_table

    space = get_space("ofa-mbv3-cifar")
    monkeypatch.setattr(validating, "measure_groups", lambda device, space, table, archs, cfg: iter([MeasuredGroup(
        list(archs), ([space.macs(a) / 1e6 for a in archs], [space.macs(a) / 1e6 for a in archs]), None)]))
    result = validate(get_device("cpu-ort"), space, find_table("cpu-ort", space.name), ValidateConfig(samples=samples))
    assert ("flops_linear" in result.estimates) == (samples >= 3)
    if samples >= 3:  # latency exactly linear in MACs: a line through the others predicts each one
        np.testing.assert_allclose(result.estimates["flops_linear"], result.measured)


def test_validate_on_the_tiny_space(tiny_table):
    result = validate(get_device("cpu-ort"), get_space("tiny"), tiny_table,
                      ValidateConfig(samples=4, group=3, warmup=1, reps=3))
    assert len(result.archs) == 4 and len(set(result.archs)) == 4
    assert all(a.resolution == 16 for a in result.archs)
    assert result.measured.shape == (4,) and (result.measured > 0).all()
    assert {"lut", "lut_drift_normalized", "flops_linear"} <= set(result.estimates)
    assert result.reference["table_ms"] == tiny_table.reference_ms and result.reference["now_ms"] > 0
    metrics = result.metrics()
    assert set(metrics["lut"]) == {"within_10pct", "mape_pct", "spearman", "bias_pct"} and "noise_floor" in metrics


def test_validate_refuses_resolutions_the_table_lacks(tiny_table):
    with pytest.raises(ConfigError, match=r"has no entries at resolution\(s\) 24 \(it has: 16\)"):
        validate(get_device("cpu-ort"), get_space("tiny"), tiny_table, ValidateConfig(samples=2, resolutions=(24,)))


def test_validate_command(cli, tiny_table, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("OFAKIT_TABLES_PATH", str(tiny_table.path.parent))
    png = tmp_path / "v.png"
    result = cli("latency", "validate", "--device", "cpu-ort", "--space", "tiny", "--samples", "3", "--reps", "2",
                 "--json", "--plot", png)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["samples"] == 3 and len(data["subnets"]) == 3 and "noise_floor" in data["metrics"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("problem", ["file in the way", "no matplotlib"])
def test_validate_checks_its_plot_before_measuring(cli, tmp_path, monkeypatch, problem):
    """A --plot that cannot be written is one line before any subnet is measured, not a traceback after."""
    import sys

    import ofakit.latency.validate as validating

    monkeypatch.setattr(validating, "validate", lambda *a, **k: pytest.fail("measured before checking --plot"))
    (tmp_path / "file").write_text("x")
    png = tmp_path / "v.png"
    if problem == "file in the way":
        png = tmp_path / "file" / "v.png"
    else:
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: its import fails
    result = cli("latency", "validate", "--device", "cpu-ort", "--space", "ofa-mbv3-cifar", "--plot", png)
    if problem == "file in the way":
        result.assert_user_error(f"cannot write the plot to '{png}'", "is not a directory")
    else:
        result.assert_user_error("--plot: matplotlib is not installed; install it with pip install 'ofakit[plot]'")


def test_validate_command_mistakes(cli, tiny_table, monkeypatch):
    monkeypatch.setenv("OFAKIT_TABLES_PATH", str(tiny_table.path.parent))
    cli("latency", "validate", "--device", "cpu-ort", "--space", "tiny", "--samples", "1").assert_user_error(
        "--samples must be at least 2, got 1")
    cli("latency", "validate", "--device", "h100-tensorrt", "--space", "tiny").assert_user_error(
        "no latency table for device 'h100-tensorrt' and space 'tiny'")


def test_validate_scores_a_learned_predictor_on_subnets_it_was_not_fitted_on(tiny_table):
    import random

    from ofakit.latency.estimate import LutEstimator
    from ofakit.latency.measure import sample_archs
    from ofakit.predict.latency import fit_latency_predictor
    from ofakit.latency.measure import LatencyRecord

    space = get_space("tiny")
    fitted = sample_archs(space, (16,), 10, random.Random(0))
    lut = LutEstimator(tiny_table).estimate_batch(fitted)
    predictor = fit_latency_predictor(tiny_table, [LatencyRecord(a, 1.2 * ms, tiny_table.reference_ms)
                                                   for a, ms in zip(fitted, lut)])
    result = validate(get_device("cpu-ort"), space, tiny_table, ValidateConfig(samples=3, group=3, warmup=1, reps=2),
                      predictor=predictor)
    assert not set(result.archs) & set(fitted)  # same seed, yet none of the fitted subnets
    np.testing.assert_allclose(result.estimates["predictor"], predictor.estimate_batch(result.archs))
    assert {"predictor", "predictor_drift_normalized"} <= set(result.metrics())

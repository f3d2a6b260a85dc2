"""Phones from published figures: the shipped calibrations load for both OFA MobileNetV3 spaces and are consistent
with their base, `specialize --device pixel` works for such bundles, a phone with nothing measured (or the CIFAR
space on a phone) is an error that says what to measure, and a user's timed subnets calibrate a new phone."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ofakit.errors import LatencyLookupError
from ofakit.latency.devices import shipped_dir
from ofakit.predict.accuracy import AccuracyPredictor
from ofakit.predict.estimators import estimator_for
from ofakit.predict.op_estimator import read_op_model
from ofakit.predict.op_model import OpModel
from ofakit.predict.phones import (BASES, base_estimates, build_shipped, calibration_factor, leave_one_out, main,
                                   one_net_transfer, published_nets, read_calibration, table_free_models)
from ofakit.space import get_space

SPACES = ("ofa-mbv3-w1.0", "ofa-mbv3-w1.2")


def make_bundle(path, space):
    """What specialize reads of a bundle: bundle.json and an accuracy predictor (random MLP; no weights)."""
    path.mkdir(parents=True)
    sp = get_space(space)
    (path / "bundle.json").write_text(json.dumps({"space": space, "num_classes": sp.num_classes}))
    rng, n = np.random.default_rng(1), len(sp.feature_names)
    arrays = {"w0": rng.normal(0, 0.1, (16, n)), "b0": np.zeros(16), "w1": rng.normal(0, 0.1, (1, 16)),
              "b1": np.zeros(1), "offset": np.array([0.7])}
    AccuracyPredictor(space, "mlp", arrays, meta={"layers": 2}).save(path)
    return path


def test_factor_is_the_geometric_mean_and_held_out_errors_leave_the_net_out():
    figures, base = np.array([10.0, 20.0, 40.0]), np.array([5.0, 10.0, 10.0])
    assert calibration_factor(figures, base) == pytest.approx((2 * 2 * 4) ** (1 / 3))
    loo = leave_one_out(figures, base)
    assert loo[2] == pytest.approx((2.0 * 10 / 40 - 1) * 100)  # calibrated on the first two only: factor 2
    pairs = one_net_transfer(figures, base)
    assert len(pairs) == 6 and pairs[0] == pytest.approx(0.0) and pairs[1] == pytest.approx(-50.0)


@pytest.mark.parametrize("device", sorted(BASES))
def test_shipped_calibrations_serve_both_spaces_and_match_their_base(device):
    calibration, path = read_calibration(device)
    base = read_op_model(calibration.base.device)
    assert calibration.base.digest == base.digest and set(calibration.spaces) == set(SPACES)
    figures = np.array([n.ms for n in calibration.nets])
    estimates = base_estimates(base, [n.arch for n in calibration.nets])
    assert estimates == pytest.approx([n.base_ms for n in calibration.nets], rel=1e-4)
    assert calibration.factor == pytest.approx(calibration_factor(figures, estimates), rel=1e-4)
    assert "latency budgets" in calibration.notes[0] and "once-for-all" in calibration.attribution
    for space in SPACES:
        est = estimator_for(device, space, model="auto")
        sp = get_space(space)
        assert est.name == "calibrated" and est.table is None and est.path == path
        assert 0 < est.estimate(sp.smallest()) < est.estimate(sp.largest())
    net = calibration.nets[0]
    est = estimator_for(device, net.arch.space, model="calibrated")
    assert est.fitted_on(net.arch) and not est.fitted_on(get_space(net.arch.space).largest())
    assert est.estimate(net.arch) == pytest.approx(calibration.factor * net.base_ms, rel=1e-4)


def test_pixel_is_pixel1_over_its_own_table_and_its_nets_are_held_out_within_5pct():
    calibration, _ = read_calibration("pixel1")
    assert calibration.base.device == "pixel1" and len(calibration.nets) == 7
    assert calibration.held_out["max_pct"] <= 5
    assert estimator_for("pixel", "ofa-mbv3-w1.0", model="auto").info["device"] == "pixel1"


def test_specialize_for_pixel_meets_the_budget_for_both_spaces(tmp_path, capsys):
    from ofakit.cli.main import main as ofakit

    for space in SPACES:
        bundle = make_bundle(tmp_path / space, space)
        assert ofakit(["specialize", "--device", "pixel", "--latency", "30ms", "--bundle", str(bundle), "--budget",
                       "500", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["latency_estimator"] == "calibrated" and report["device"] == "pixel1"
        assert 20 < report["latency_ms"] <= 30


def test_a_phone_and_the_cifar_space_is_an_error_that_says_what_to_measure(tmp_path, capsys):
    from ofakit.cli.main import main as ofakit

    bundle = make_bundle(tmp_path / "cifar", "ofa-mbv3-cifar")
    assert ofakit(["specialize", "--device", "pixel", "--latency", "30ms", "--bundle", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for fragment in ("nothing was measured for space 'ofa-mbv3-cifar'", "benchmark_model",
                     "ofakit latency adapt --device pixel1 --space ofa-mbv3-cifar --records MEASURED.jsonl"):
        assert fragment in err


@pytest.fixture
def new_phone(tmp_path, monkeypatch):
    """A user's TFLite phone: a device file in $OFAKIT_DEVICES_PATH, nothing measured, an empty tables folder."""
    devices, tables = tmp_path / "devices", tmp_path / "tables"
    devices.mkdir()
    tables.mkdir()
    (devices / "galaxy-s21.yaml").write_text("name: galaxy-s21\nkind: mobile\nbackend:\n  name: tflite\n"
                                             "reach:\n  via: adb\n")
    monkeypatch.setenv("OFAKIT_DEVICES_PATH", str(devices))
    monkeypatch.setenv("OFAKIT_TABLES_PATH", str(tables))
    return tables


def test_a_phone_with_no_reference_measurement_gets_no_model(new_phone):
    for model in ("auto", "calibrated"):
        with pytest.raises(LatencyLookupError, match="'galaxy-s21' has no calibrated latency model.*time a few "
                                                     "subnets of ofa-mbv3-w1.0 end to end.*benchmark_model"):
            estimator_for("galaxy-s21", "ofa-mbv3-w1.0", model=model)


def test_timed_subnets_calibrate_a_new_phone_over_note10(new_phone, capsys):
    space = get_space("ofa-mbv3-w1.0")
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(5)]
    note10 = base_estimates(read_op_model("note10"), archs)
    records = new_phone / "measured.jsonl"
    records.write_text("".join(json.dumps({"arch": a.to_dict(), "measured_ms": 3.0 * ms}) + "\n"
                               for a, ms in zip(archs, note10)))
    assert main(["--device", "galaxy-s21", "--records", str(records), "--out", str(new_phone)]) == 0
    est = estimator_for("galaxy-s21", "ofa-mbv3-w1.0", model="auto")
    assert est.name == "calibrated" and est.factor == pytest.approx(3.0)
    other = space.sample(random.Random(1))
    assert est.estimate(other) == pytest.approx(3.0 * base_estimates(read_op_model("note10"), [other])[0])
    with pytest.raises(LatencyLookupError, match="nothing was measured for space 'ofa-mbv3-w1.2'"):
        estimator_for("galaxy-s21", "ofa-mbv3-w1.2", model="auto")
    with pytest.raises(SystemExit):  # never overwrites a calibration
        main(["--device", "galaxy-s21", "--records", str(records), "--out", str(new_phone)])
    assert "exists" in capsys.readouterr().err


def test_published_nets_and_rebuilt_files_match_the_shipped_ones(shared_data, tmp_path):
    nets = published_nets(shared_data / "ofa_specialized_nets.json")
    assert {d: len(n) for d, n in nets.items()} == {"note10": 8, "pixel1": 7, "pixel2": 4, "lg-g8": 4, "note8": 4,
                                                   "s7edge": 4}
    build_shipped(shared_data / "ofa_specialized_nets.json", tmp_path)
    for device in BASES:
        rebuilt, _ = read_calibration(device, dirs=[tmp_path])
        shipped, _ = read_calibration(device)
        assert rebuilt.factor == pytest.approx(shipped.factor, rel=1e-9)
        assert (rebuilt.base.device, rebuilt.base.file) == (shipped.base.device, shipped.base.file)
        # the shipped calibration names the shipped op model (the check made when it loads); the refit gives that
        # model's coefficients up to the last bits of this CPU's least squares, which an exact digest would not allow
        base = OpModel.load(shipped_dir("latency_tables") / shipped.base.file)
        assert shipped.base.digest == base.digest
        np.testing.assert_allclose(OpModel.load(tmp_path / rebuilt.base.file).coef, base.coef, rtol=1e-9, atol=1e-15)


def test_devices_say_how_they_are_estimated_without_a_table():
    note10, = table_free_models("note10")
    assert note10["kind"] == "op model from a table" and note10["table"] == "note10_ofa-mbv3-w1.2.json"
    assert note10["spaces"] == ["ofa-mbv3-w1.2", "ofa-mbv3-w1.0"] and note10["held_out"]["mape_pct"] < 5
    kinds = {m["kind"]: m for m in table_free_models("pixel")}
    assert set(kinds) == {"op model from a table", "calibrated transfer"}
    cal = kinds["calibrated transfer"]
    assert cal["nets"] == 7 and cal["base"]["table"] == "pixel1_proxyless-mobile.json"
    assert cal["held_out"]["max_pct"] <= 5 and "once-for-all" in cal["attribution"]
    assert table_free_models("cpu-ort") == []

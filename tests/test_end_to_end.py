"""The whole chain through the CLI on the tiny space: train -> predictor fit -> profile -> specialize -> export ->
ONNX Runtime on real images (scikit-learn's digits). This is the newcomer's path, on data that ships with a package."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_fit_profile_specialize_export_verify(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("OFAKIT_TABLES_PATH", str(tmp_path / "tables"))
    run, bundle = tmp_path / "run", tmp_path / "run" / "bundle"

    trained = cli("train", "--recipe", REPO / "recipes" / "tiny-digits.yaml", "--out", run, "--quiet")
    assert trained.code == 0, trained.err
    assert (bundle / "bundle.json").is_file()

    fitted = cli("predictor", "fit", "--bundle", bundle, "--data", "digits", "--samples", "30",
                 "--calibration-batches", "2")
    assert fitted.code == 0, fitted.err

    table = tmp_path / "tables" / "cpu-ort_tiny.json"
    profiled = cli("profile", "--device", "cpu-ort", "--space", "tiny", "--resolutions", "16", "24", "32",
                   "--out", table, "--reps", "5", "--warmup", "1", "--no-progress")
    assert profiled.code == 0, profiled.err

    from ofakit.predict.estimators import estimator_for
    from ofakit.space import get_space

    space = get_space("tiny")
    est = estimator_for("cpu-ort", "tiny")
    low, high = est.estimate(space.smallest()), est.estimate(space.largest())
    assert low < high
    budget = low + 0.5 * (high - low)
    spec = cli("specialize", "--device", "cpu-ort", "--latency", f"{budget:.4f}ms", "--bundle", bundle,
               "--budget", "400", "--out", tmp_path / "spec", "--json", "--verify", "digits")
    assert spec.code == 0, spec.err
    report = json.loads(spec.out)
    assert report["latency_ms"] <= budget and report["space"] == "tiny"
    verify = report["verify"]
    assert 0.3 < verify["top1"] <= 1.0 and verify["predicted_top1"] == report["predicted_accuracy"]
    assert report["latency_drift"]["how"] == "measured"  # a table profiled here: its reference timed again
    assert verify["estimated_latency_ms"] == pytest.approx(report["latency_ms"] / report.get("latency_drift_scale", 1),
                                                           abs=2e-4)  # at the table's level
    assert 0.2 < verify["measured_latency_ms"] / report["latency_ms"] < 5  # same model, measured vs its table

    model = tmp_path / "subnet.onnx"
    exported = cli("export", "--bundle", bundle, "--arch", tmp_path / "spec" / "arch.json", "--format", "onnx",
                   "--out", model, "--calibrate-bn", "digits")
    assert exported.code == 0, exported.err
    manifest = json.loads((tmp_path / "subnet.onnx.json").read_text())
    assert manifest["parity"]["max_abs_diff"] <= 1e-4

    # ONNX Runtime on the held-out digits, preprocessed as the manifest says
    from ofakit.train.data import iterate_batches, load_dataset

    val = load_dataset("digits", "val")
    assert manifest["normalization"]["mean"] == pytest.approx(list(val.mean))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    r = report["arch"]["resolution"]
    correct = total = 0
    for x, y in iterate_batches(val, 1, resolution=r):
        logits = session.run(None, {name: x.numpy().astype(np.float32)})[0]
        correct += int(logits.argmax(1)[0] == int(y[0]))
        total += 1
    accuracy = correct / total
    assert accuracy > 0.6, f"ONNX Runtime top-1 on digits {accuracy:.3f}"  # chance is 0.1
    images = manifest["parity"].get("images") or {}
    if images.get("top1_agreement") is not None:
        assert images["top1_agreement"] >= 0.98

"""Verifying a specialized subnet: measured latency next to the estimate at the table's level and drift-scaled by the
reference measured now; measured top-1 next to the predicted one; a device that does not run here is said, not
raised."""
from __future__ import annotations

import pytest

from ofakit.errors import BackendUnavailableError
from ofakit.latency.measure import MeasuredGroup
from ofakit.latency.table import find_table
from ofakit.search import verify
from ofakit.space import get_space

SPACE = "ofa-mbv3-cifar"


def report(latency_ms: float, **extra: object) -> dict:
    return {"device": "cpu-ort", "space": SPACE, "latency_ms": latency_ms, "predicted_accuracy": 0.5, **extra}


@pytest.fixture
def measured(monkeypatch):
    """measure_groups replaced: the subnet takes 2.0 and 2.2 ms in its two passes, the reference 1.5x the table's."""
    from ofakit.latency import measure

    seen = []

    def fake(device, space, table, archs, cfg):
        seen.append((device.name, space.name, list(archs), cfg.group))
        refs = None if table.reference_ms is None else (1.5 * table.reference_ms,) * 2  # none: no reference timed
        yield MeasuredGroup(list(archs), ([2.0], [2.2]), refs)

    monkeypatch.setattr(measure, "measure_groups", fake)
    return seen


def test_measured_latency_beside_the_estimate_at_the_tables_level_and_drift_scaled(measured):
    arch = get_space(SPACE).smallest()
    out = verify.measure_subnet_latency(arch, report(3.0, latency_drift_scale=1.2))
    assert measured == [("cpu-ort", SPACE, [arch], 1)]
    assert out["measured_latency_ms"] == 2.1  # the mean of the two passes
    assert out["estimated_latency_ms"] == 2.5  # 3.0 ms was scaled by 1.2 for the search: 2.5 at the table's level
    assert out["drift_scale"] == 1.5 and out["estimated_latency_ms_drift_normalized"] == 3.75


def test_a_table_without_a_reference_gives_no_drift(measured, monkeypatch):
    table = find_table("cpu-ort", SPACE)
    monkeypatch.setattr(type(table), "reference_ms", property(lambda self: None))
    out = verify.measure_subnet_latency(get_space(SPACE).smallest(), report(3.0))
    assert out == {"measured_latency_ms": 2.1, "estimated_latency_ms": 3.0}


def test_verify_reports_top1_and_says_why_latency_was_not_measured(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from ofakit.bundle import save_bundle
    from ofakit.supernet import build_supernet

    torch.manual_seed(0)
    save_bundle(tmp_path, build_supernet("tiny", num_classes=10))

    def unavailable(arch, report):
        raise BackendUnavailableError("onnxruntime is not installed")

    monkeypatch.setattr(verify, "measure_subnet_latency", unavailable)
    out = verify.verify_subnet(tmp_path, get_space("tiny").smallest(), "digits", report(1.0))
    assert 0 <= out["top1"] <= 1 and out["predicted_top1"] == 0.5 and out["data"] == "digits"
    assert out["latency_not_measured"] == "onnxruntime is not installed" and "measured_latency_ms" not in out

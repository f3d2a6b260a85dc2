"""Check a specialized subnet against what the search predicted: its real top-1 after BN recalibration, and its
latency measured end to end on the device where the device's runtime runs here (the estimate also scaled by the
table's reference model measured now, for the machine's drift since the table was made)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ofakit.arch import ArchConfig
from ofakit.errors import BackendUnavailableError


def verify_subnet(bundle: str | Path, arch: ArchConfig, data: str, report: dict[str, Any]) -> dict[str, Any]:
    """Measured top-1 of `arch` on `data` next to the report's predicted one, and its measured latency
    (`measure_subnet_latency`) or why it was not measured.

    Args:
        report: what `specialize` reported for `arch` (device, space, estimate and drift scale).
    """
    from ofakit.bundle import load_bundle
    from ofakit.train.data import load_dataset
    from ofakit.train.evaluate import EvalConfig, evaluate_subnet

    supernet, _ = load_bundle(bundle)
    top1 = evaluate_subnet(supernet, arch, load_dataset(data, "train"), load_dataset(data, "val"), EvalConfig())
    out: dict[str, Any] = {"top1": round(top1, 4), "predicted_top1": report["predicted_accuracy"], "data": data}
    try:
        out.update(measure_subnet_latency(arch, report))
    except BackendUnavailableError as exc:
        out["latency_not_measured"] = str(exc)
    return out


def measure_subnet_latency(arch: ArchConfig, report: dict[str, Any]) -> dict[str, Any]:
    """`arch` measured end to end on the report's device (two interleaved passes with the table's reference model),
    next to the estimate at the table's level and, where the table has a reference, the estimate scaled by the
    reference's drift since the table was made."""
    from ofakit.latency.devices import get_device
    from ofakit.latency.measure import ValidateConfig, measure_groups
    from ofakit.latency.table import find_table
    from ofakit.space import get_space

    table = find_table(report["device"], report["space"])
    group = next(measure_groups(get_device(report["device"]), get_space(report["space"]), table, [arch],
                                ValidateConfig(group=1)))
    estimate = report["latency_ms"] / report.get("latency_drift_scale", 1.0)  # at the table's level
    out = {"measured_latency_ms": round(group.measured[0], 4), "estimated_latency_ms": round(estimate, 4)}
    if group.reference_level is not None and table.reference_ms:
        scale = group.reference_level / table.reference_ms
        out["drift_scale"] = round(scale, 4)
        out["estimated_latency_ms_drift_normalized"] = round(estimate * scale, 4)
    return out

"""Where every latency estimate of a device comes from, and how far off it is on data it was not fitted on.

`device_models(device)` lists, for each space a device serves, each way its latency is estimated, as `ofakit
devices` shows it:
- a measured table (`ofakit profile` on the device) or a converted one (published per-layer measurements);
- a learned predictor over a table, fitted on subnets measured end to end (cross-validated error);
- an op model fitted on a table's entries (error on left-out resolutions or entries);
- a calibrated transfer (an op model times a factor fitted on the device's published nets; leave-one-out error);
- a structural model fitted on measured subnets (error on held-out subnets);
- a few-shot adaptation (`ofakit latency adapt`; cross-validated error on its records).
Each entry names its file, its source and, for data from elsewhere, the attribution and license.
"""
from __future__ import annotations

from typing import Any

from ofakit.latency.devices import get_device
from ofakit.latency.table import LatencyTable, available_tables
from ofakit.predict.adapt import adapted_file
from ofakit.predict.adapt import describe as describe_adapted
from ofakit.predict.latency import find_predictor
from ofakit.predict.phones import table_free_models
from ofakit.predict.structural import describe as describe_structural
from ofakit.predict.structural import load_structural, model_file


def _table(space: str, path: Any) -> dict[str, Any]:
    meta = LatencyTable.load(path).meta
    measured = str(meta.get("source", "")).startswith("ofakit profile")
    out = {"kind": "measured table" if measured else "converted table", "spaces": [space], "file": path.name,
           "source": meta.get("source"), "date": meta.get("date")}
    for key in ("host", "attribution", "license"):
        if meta.get(key):
            out[key] = meta[key]
    if meta.get("reference"):
        out["drift"] = "its reference model can be timed here to follow the machine's drift"
    return out


def _predictor(device: str, space: str) -> dict[str, Any] | None:
    import json

    path = find_predictor(device, space)
    if path is None:
        return None
    meta = json.loads(path.read_text())["meta"]
    cv = (meta.get("cv") or {}).get(meta.get("kind"), {})
    return {"kind": "learned predictor over the table", "spaces": [space], "file": path.name,
            "records": meta.get("records"), "model": meta.get("kind"), "source": meta.get("source"),
            "held_out": {"scheme": f"{meta.get('folds')}-fold cross-validation", **cv}}


def _adapted(device: str, source: str) -> dict[str, Any] | None:
    path = adapted_file(device, source)
    if path is None:
        return None
    from ofakit.predict.estimators import estimator_for

    model = estimator_for(device, json_space(path), model="adapted")
    entry = describe_adapted(model)
    return {**entry, "held_out": {"scheme": "5-fold cross-validation of the whole fit", **entry.pop("cv")}}


def json_space(path: Any) -> str:
    import json

    return str(json.loads(path.read_text())["meta"]["space"])


def device_models(device: str) -> list[dict[str, Any]]:
    """Every latency model of `device` (name or alias), tables first, each with its provenance (see module doc)."""
    spec = get_device(device)
    name = spec.name
    out: list[dict[str, Any]] = []
    for space, path in sorted(available_tables(name).items()):
        out.append(_table(space, path))
        predictor = _predictor(name, space)
        if predictor is not None:
            out.append(predictor)
    out += table_free_models(name)
    if model_file(name) is not None:
        from ofakit.predict.structural import HELP_SPACE

        out.append(describe_structural(load_structural(name, HELP_SPACE)))
    adapted = _adapted(name, spec.source)
    if adapted is not None:
        out.append(adapted)
    return out


def error_summary(entry: dict[str, Any]) -> str:
    """The held-out error of one model in a few words ('-' for a table, which is the measurement itself)."""
    held = entry.get("held_out") or {}
    if not held:
        return "-"
    if "within_10pct" in held:
        text = f"{100 * held['within_10pct']:.0f} % within ±10 %"
        return text + (f", MAPE {held['mape_pct']:.1f} %" if "mape_pct" in held else "")
    if "max_pct" in held:
        return f"max {held['max_pct']:.1f} %" + (f", MAPE {held['mape_pct']:.1f} %" if "mape_pct" in held else "")
    if "mape_pct" in held:
        return f"MAPE {held['mape_pct']:.1f} %"
    return "-"


__all__ = ["device_models", "error_summary"]

"""Where every latency estimate of a device comes from, and how far off it is on data it was not fitted on.

`device_models(device)` lists, for each space a device serves, each way its latency is estimated, as `ofakit
devices` shows it:
- a measured table (`ofakit profile` on the device) or a converted one (published per-layer measurements);
- a learned predictor over a table, fitted on subnets measured end to end (cross-validated error);
- an op model fitted on a table's entries (error on left-out resolutions or entries);
- a calibrated transfer (an op model times a factor fitted on the device's published nets; leave-one-out error);
- a structural model fitted on measured subnets (error on held-out subnets);
- a few-shot adaptation (`ofakit latency adapt`; cross-validated error on its records).
Each entry names its file, its source and, for data from elsewhere, the attribution and license. A model file that
cannot be read (malformed, or of another version) is an entry of kind "unreadable file" holding the one-line error,
and the device's other models are still listed.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ofakit.errors import OfakitError
from ofakit.latency.devices import get_device
from ofakit.latency.table import LatencyTable, available_tables
from ofakit.predict.adapt import adapted_file, read_adapted_file
from ofakit.predict.adapt import describe as describe_adapted
from ofakit.predict.latency import find_predictor, read_predictor_file
from ofakit.predict.phones import table_free_models
from ofakit.predict.structural import describe as describe_structural
from ofakit.predict.structural import load_structural, model_file


UNREADABLE = "unreadable file"  # the kind of a model whose file cannot be read (the entry holds the error)


def _table(space: str, path: Path) -> dict[str, Any]:
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


def _predictor(space: str, path: Path) -> dict[str, Any]:
    meta, _, _ = read_predictor_file(path)
    kind = meta.get("kind")
    cv = (meta.get("cv") or {}).get(kind)
    held = {k: v for k, v in cv.items() if isinstance(v, (int, float))} if isinstance(cv, dict) else {}
    return {"kind": "learned predictor over the table", "spaces": [space], "file": path.name,
            "records": meta.get("records"), "model": kind, "source": meta.get("source"),
            "held_out": {"scheme": f"{meta.get('folds')}-fold cross-validation", **held}}


def _adapted(device: str, path: Path) -> dict[str, Any]:
    from ofakit.predict.estimators import estimator_for

    meta, _ = read_adapted_file(path)
    entry = describe_adapted(estimator_for(device, meta["space"], model="adapted"))
    return {**entry, "held_out": {"scheme": "5-fold cross-validation of the whole fit", **entry.pop("cv")}}


def _read(describe: Callable[[], Any], path: Path | None, spaces: list[str]) -> list[dict[str, Any]]:
    """What `describe` says of a model file (a dict, or a list of them), as a list; a file that is not what it should
    be (malformed, or another version's) is one entry of kind UNREADABLE with the error, so that the others are still
    listed."""
    try:
        found = describe()
    except OfakitError as exc:
        return [{"kind": UNREADABLE, "spaces": spaces, "file": path.name if path else None, "error": str(exc)}]
    return found if isinstance(found, list) else [found]


def device_models(device: str) -> list[dict[str, Any]]:
    """Every latency model of `device` (name or alias), tables first, each with its provenance (see module doc); a
    model file that cannot be read is an entry of kind UNREADABLE with its error."""
    spec = get_device(device)
    name = spec.name
    out: list[dict[str, Any]] = []
    for space, path in sorted(available_tables(name).items()):
        out += _read(lambda: _table(space, path), path, [space])
        predictor = find_predictor(name, space)
        if predictor is not None:
            out += _read(lambda: _predictor(space, predictor), predictor, [space])
    out += _read(lambda: table_free_models(name), None, [])
    structural = model_file(name)
    if structural is not None:
        from ofakit.predict.structural import HELP_SPACE

        out += _read(lambda: describe_structural(load_structural(name, HELP_SPACE)), structural, [HELP_SPACE])
    adapted = adapted_file(name, spec.source)
    if adapted is not None:
        out += _read(lambda: _adapted(name, adapted), adapted, [])
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


__all__ = ["UNREADABLE", "device_models", "error_summary"]

"""Phones ofakit cannot reach, from published end-to-end figures: an op model (`ofakit.predict.op_model`) of a phone
with a table, times one factor calibrated on the phone's published nets.

MIT's once-for-all project published specialized OFA MobileNetV3 nets for six phones, each named after its latency
budget (`pixel2_lat-35ms_...`; Cai et al., "Once-for-All", ICLR 2020). Those budgets are the only numbers there are
for five of the phones: whole milliseconds, probably sums of per-layer tables like Note10's (whose published nets
sum to 29.97 ms for "30 ms"). A phone's latency model is therefore a base that knows the architecture's structure,
the Note10 op model or Pixel 1's own (fitted on its ProxylessNAS table), times

    factor = geometric mean over the phone's published nets of (published ms / base ms),

which minimizes the relative error. The calibration is stored as JSON (`latency_tables/<device>.calibrated.json`,
never pickled): the base model's digest, the nets with their published and base figures, the factor, the spaces and
resolutions served, and the error on nets left out. A phone with no published or measured net has no model.

`python -m ofakit.predict.phones --nets ofa_specialized_nets.json` rebuilds the shipped op models and calibrations.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofakit import __version__
from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.io import read_json_file, save_text_file
from ofakit.latency.table import LatencyTable, table_dirs
from ofakit.predict.op_model import (OpModel, OpModelEstimator, describe, find_model_file, fit_op_model,
                                     read_model_file, read_op_model)
from ofakit.space import get_space

FORMAT = "ofakit-calibrated-latency"
VERSION = 1
SUFFIX = ".calibrated.json"
SPACES = ("ofa-mbv3-w1.0", "ofa-mbv3-w1.2")  # the spaces of MIT's published phone nets
MIT_PHONES = {"note10": "note10", "pixel1": "pixel1", "pixel2": "pixel2", "LG-G8": "lg-g8", "note8": "note8",
              "s7edge": "s7edge"}  # MIT's names in the published nets -> ofakit device names
BASES = {"pixel1": "pixel1", "pixel2": "note10", "lg-g8": "note10", "note8": "note10", "s7edge": "note10"}
# base device -> (the space of the table its op model is fitted on, the spaces the op model serves on its own)
BASE_MODELS = {"note10": ("ofa-mbv3-w1.2", ("ofa-mbv3-w1.2", "ofa-mbv3-w1.0")),
               "pixel1": ("proxyless-mobile", ("proxyless-mobile",))}
SOURCE = ("MIT once-for-all specialized nets (https://github.com/han-cai/files, ofa/ofa_specialized/): net.config and "
          "image size of each net, latency budget in its name")
BUDGET_NOTE = ("published figures are the latency budgets in the nets' names, whole milliseconds, probably sums of "
               "per-layer tables measured with TensorFlow Lite (Note10's 30/41/50 ms nets sum to 29.97/39.91/49.78 "
               "ms over its table), not end-to-end timings")


@dataclass(frozen=True)
class PublishedNet:
    """One published specialized net: its name, phone (ofakit name), architecture and latency budget."""

    name: str
    device: str
    arch: ArchConfig
    published_ms: float


def published_nets(path: str | Path) -> list[PublishedNet]:
    """The phone nets of MIT's published specialized nets file (`ofa_specialized_nets.json`: name -> {image_size,
    net_config}); nets of other targets (GPUs, CPUs, FLOPs) are left out."""
    from ofakit.interop.ofa_config import arch_from_ofa_config

    data = read_json_file(path, "published nets (ofa_specialized_nets.json)")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected an object of name -> {{image_size, net_config}}")
    out = []
    for name, net in data.items():
        m = re.match(r"^(?P<phone>[A-Za-z0-9-]+)_lat-(?P<ms>\d+(?:\.\d+)?)ms", name)
        if not m or m["phone"] not in MIT_PHONES:
            continue
        with warnings.catch_warnings():  # off-range resolutions (Pixel 1's 228/240 px nets) are legal here
            warnings.simplefilter("ignore")
            arch = arch_from_ofa_config(net["net_config"], net["image_size"])
        out.append(PublishedNet(name, MIT_PHONES[m["phone"]], arch, float(m["ms"])))
    return out


def base_estimates(base: OpModel, archs: Sequence[ArchConfig]) -> np.ndarray:
    """The base model's ms for `archs` (any of SPACES, any resolution), uncalibrated."""
    out = np.empty(len(archs))
    for space in {a.space for a in archs}:
        at = [i for i, a in enumerate(archs) if a.space == space]
        est = OpModelEstimator(base, get_space(space), resolution_range=(1, 10_000))
        out[at] = est.estimate_batch([archs[i] for i in at])
    return out


def calibration_factor(published: np.ndarray, base: np.ndarray) -> float:
    """Geometric mean of published / base: the one factor that minimizes the relative error over the nets."""
    return float(np.exp(np.mean(np.log(np.asarray(published) / np.asarray(base)))))


def leave_one_out(published: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Relative error (%) on each net of the factor calibrated on the others."""
    published, base = np.asarray(published, float), np.asarray(base, float)
    keep = ~np.eye(len(published), dtype=bool)
    return np.array([(calibration_factor(published[k], base[k]) * base[i] / published[i] - 1) * 100
                     for i, k in enumerate(keep)])


def one_net_transfer(published: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Relative errors (%) of calibrating on one net and testing on each other net, every ordered pair."""
    published, base = np.asarray(published, float), np.asarray(base, float)
    return np.array([(published[i] / base[i] * base[j] / published[j] - 1) * 100
                     for i in range(len(published)) for j in range(len(published)) if i != j])


def model_digest(model: OpModel) -> str:
    """What identifies a base model: its coefficients and the digest of its table."""
    text = json.dumps([model.coef.tolist(), (model.meta.get("table") or {}).get("digest")])
    return hashlib.sha256(text.encode()).hexdigest()


def _range(spaces: Iterable[str], resolutions: Iterable[int]) -> list[int]:
    """The input resolutions served: the spaces' search ranges and the resolutions checked against figures."""
    values = [r for s in spaces for r in get_space(s).resolutions] + list(resolutions)
    return [min(values), max(values)]


# -- calibrated models ------------------------------------------------------------------------------------------
def fit_phone_model(device: str, nets: Sequence[PublishedNet], base: OpModel, *,
                    spaces: Sequence[str] = SPACES) -> dict[str, Any]:
    """The calibration of `device` on its published `nets` over `base`: the JSON document `load_phone_model`
    reads (LatencyLookupError when there is no net to calibrate on)."""
    from ofakit.predict.latency import arch_digest

    nets = [n for n in nets if n.device == device]
    if not nets:
        raise LatencyLookupError(_no_reference(device, spaces[0]))
    published = np.array([n.published_ms for n in nets])
    est = base_estimates(base, [n.arch for n in nets])
    loo = leave_one_out(published, est) if len(nets) > 1 else np.array([])
    meta = {
        "device": device,
        "base": {"device": base.device, "file": base.path.name if base.path else None, "digest": model_digest(base),
                 "table": (base.meta.get("table") or {}).get("file")},
        "spaces": list(spaces),
        "resolution_range": _range(spaces, [n.arch.resolution for n in nets]),
        "factor": calibration_factor(published, est),
        "calibration": {
            "method": "geometric mean over the nets of published ms / base ms",
            "nets": [{"name": n.name, "arch": n.arch.to_dict(), "published_ms": n.published_ms,
                      "base_ms": round(float(b), 4), "digest": arch_digest(n.arch)} for n, b in zip(nets, est)],
        },
        "held_out": ({"scheme": "leave one net out (calibrated on the others)",
                      "errors_pct": loo.round(2).tolist(), "max_pct": round(float(np.abs(loo).max()), 2)}
                     if len(loo) else {"scheme": "none: one net only"}),
        "source": SOURCE,
        "attribution": "Architectures and latency budgets published by MIT HAN Lab's once-for-all project (Cai et al., "
                       "ICLR 2020); base model: " + str(base.meta.get("attribution", "")),
        "license": "published figures (https://github.com/han-cai/files carries no license file); base table: "
                   + str(base.meta.get("license", "")),
        "notes": [BUDGET_NOTE],
        "date": datetime.date.today().isoformat(),
        "ofakit_version": __version__,
    }
    return {"format": FORMAT, "version": VERSION, "meta": meta}


def what_to_measure(device: str, space: str) -> str:
    """The measurements that give `device` a latency model for `space`, and the command that fits it."""
    from ofakit.latency.devices import get_device

    tflite = get_device(device).backend.name == "tflite"
    how = " with TFLite's benchmark_model (1 thread, fp32, batch 1)" if tflite else ""
    return (f"time a few subnets of {space} end to end on the device{how}, write them as JSONL records "
            f"{{\"arch\": ..., \"measured_ms\": ...}} and fit a model on them: ofakit latency adapt --device {device} "
            f"--space {space} --records MEASURED.jsonl")


def _no_reference(device: str, space: str) -> str:
    return (f"device {device!r} has no calibrated latency model ({device}{SUFFIX}): no published or measured "
            f"end-to-end figure of it. To estimate space {space!r} on it, {what_to_measure(device, space)}")


def read_phone_model(device: str, dirs: Iterable[Path] | None = None) -> tuple[dict[str, Any], Path] | None:
    """The calibration document of `device` (canonical name) and its path, or None when none is found."""
    path = find_model_file(device, SUFFIX, dirs)
    if path is None:
        return None
    data = read_model_file(path, "calibrated latency model", FORMAT, VERSION)
    meta = data.get("meta")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("base"), Mapping):
        raise ConfigError(f"{path}: 'meta' with 'base' must be objects")
    factor = meta.get("factor")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
        raise ConfigError(f"{path}: meta.factor must be a positive number, got {factor!r}")
    return dict(meta), path


def load_phone_model(device: str, space: str) -> OpModelEstimator:
    """The calibrated estimator of `device` (name or alias) for `space`.

    Raises LatencyLookupError when the device has no calibration (naming what to measure), when the calibration
    does not serve `space` (the shipped CIFAR bundle's 32x32 space on a phone), or when its base model changed.
    """
    from ofakit.latency.devices import get_device

    name = get_device(device).name
    found = read_phone_model(name)
    if found is None:
        raise LatencyLookupError(_no_reference(name, space))
    meta, path = found
    spaces = list(meta.get("spaces", ()))
    if space not in spaces:
        lo, hi = meta.get("resolution_range", ("?", "?"))
        raise LatencyLookupError(
            f"device {name!r} is estimated from published figures of {', '.join(spaces)} nets at {lo}-{hi} px; "
            f"nothing was measured for space {space!r} on it. To estimate it, {what_to_measure(name, space)}")
    base = read_op_model(str(meta["base"].get("device")))
    if meta["base"].get("digest") != model_digest(base):
        raise LatencyLookupError(f"{path} was calibrated over another version of the op model of "
                                 f"{base.device!r} ({base.path}); recalibrate: python -m ofakit.predict.phones "
                                 f"--nets ofa_specialized_nets.json --device {name}")
    nets = (meta.get("calibration") or {}).get("nets", ())
    info = {"kind": "calibrated transfer", "device": name, "file": path.name, "base": describe(base),
            "factor": meta["factor"], "nets": len(nets), "held_out": meta.get("held_out"),
            "source": meta.get("source", ""), "notes": meta.get("notes", [])}
    lo, hi = meta.get("resolution_range", base.resolution_range)
    return OpModelEstimator(base, get_space(space), factor=float(meta["factor"]), name="calibrated",
                            resolution_range=(int(lo), int(hi)), info=info,
                            fitted=[n.get("digest") for n in nets if isinstance(n, Mapping)])


# -- rebuilding the shipped files -------------------------------------------------------------------------------
def fit_base(device: str, table: LatencyTable, nets: Sequence[PublishedNet], spaces: Sequence[str]) -> OpModel:
    """The op model of a base device serving `spaces`, checked against its own published nets (those the table
    does not hold are data the model was not fitted on)."""
    own = [n for n in nets if n.device == device]
    checked = [*table.resolutions, *(n.arch.resolution for n in own)]
    model = fit_op_model(table, spaces=spaces, resolution_range=tuple(_range(spaces, checked)))
    if own:
        est = base_estimates(model, [n.arch for n in own])
        model.meta["published_nets"] = {
            "note": "uncalibrated estimates; " + BUDGET_NOTE,
            "nets": [{"name": n.name, "published_ms": n.published_ms, "estimate_ms": round(float(e), 3),
                      "error_pct": round(float((e / n.published_ms - 1) * 100), 2)} for n, e in zip(own, est)]}
    return model


def build(nets_path: str | Path, out: str | Path, devices: Sequence[str] = ()) -> list[Path]:
    """Refit the base op models on their tables (found as usual) and recalibrate the phones; returns the files."""
    from ofakit.latency.table import find_table

    nets = published_nets(nets_path)
    out = Path(out)
    written = []
    bases: dict[str, OpModel] = {}
    for device, (space, serves) in BASE_MODELS.items():
        model = fit_base(device, find_table(device, space), nets, serves)
        model.path = out / f"{device}.opmodel.json"
        bases[device] = model
        if not devices or device in devices:
            written.append(model.save(model.path))
    for device, base in BASES.items():
        if devices and device not in devices:
            continue
        doc = fit_phone_model(device, nets, bases[base])
        path = out / f"{device}{SUFFIX}"
        save_text_file(path, json.dumps(doc, indent=1) + "\n", "calibrated latency model")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ofakit.predict.phones", description=build.__doc__)
    parser.add_argument("--nets", required=True, help="MIT's ofa_specialized_nets.json")
    parser.add_argument("--out", default=str(table_dirs()[-1]) if table_dirs() else "latency_tables",
                        help="folder to write to (default: the shipped latency_tables/)")
    parser.add_argument("--device", action="append", default=[], help="only this device (repeatable)")
    args = parser.parse_args(argv)
    for path in build(args.nets, args.out, args.device):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

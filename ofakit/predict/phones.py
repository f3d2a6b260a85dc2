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

`python -m ofakit.predict.phones --nets ofa_specialized_nets.json` rebuilds the shipped op models and calibrations;
`python -m ofakit.predict.phones --device D --records MEASURED.jsonl` calibrates a device on subnets a user timed.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ofakit import __version__
from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.io import read_json_file, read_model_file, save_text_file
from ofakit.latency.measure import read_measured
from ofakit.latency.table import LatencyTable, table_dirs
from ofakit.predict.latency import arch_digest
from ofakit.predict.op_estimator import OpModelEstimator, describe, find_model_file, load_op_model, read_op_model
from ofakit.predict.op_model import SUFFIX as OP_MODEL_SUFFIX
from ofakit.predict.op_model import OpModel, fit_op_model
from ofakit.schema import build
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
ATTRIBUTION = ("Architectures and latency budgets published by MIT HAN Lab's once-for-all project (Cai et al., ICLR "
               "2020)")
LICENSE = "published figures (https://github.com/han-cai/files carries no license file)"
BUDGET_NOTE = ("published figures are the latency budgets in the nets' names, whole milliseconds, probably sums of "
               "per-layer tables measured with TensorFlow Lite (Note10's 30/41/50 ms nets sum to 29.97/39.91/49.78 "
               "ms over its table), not end-to-end timings")


@dataclass(frozen=True)
class ReferenceNet:
    """A subnet with a latency figure of the device: a published budget or a user's measurement."""

    name: str
    arch: ArchConfig
    ms: float
    source: str = "published"  # "published" (a budget in a net's name) or "measured"
    base_ms: float | None = None  # the base model's estimate, once calibrated
    digest: str = ""  # `ofakit.predict.latency.arch_digest` of the arch, once calibrated


@dataclass(frozen=True)
class BaseRef:
    """The op model a calibration multiplies."""

    device: str
    digest: str  # `OpModel.digest`: another version of the base needs a recalibration
    file: str | None = None


@dataclass(frozen=True)
class Calibration:
    """A device's latency model: `factor` times the base op model, for `spaces` at `resolution_range`."""

    device: str
    base: BaseRef
    spaces: tuple[str, ...]
    resolution_range: tuple[int, int]
    factor: float
    nets: tuple[ReferenceNet, ...]
    method: str = "geometric mean over the nets of figure / base estimate"
    held_out: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    attribution: str = ""
    license: str = ""
    notes: tuple[str, ...] = ()
    date: str = ""
    ofakit_version: str = ""

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ConfigError(f"factor must be positive, got {self.factor!r}")
        if not 0 < self.resolution_range[0] <= self.resolution_range[1]:
            raise ConfigError(f"resolution_range must be [low, high] with 0 < low <= high, got "
                              f"{list(self.resolution_range)}")

    def to_dict(self) -> dict[str, Any]:
        meta = dataclasses.asdict(self)
        meta["nets"] = [{**dataclasses.asdict(n), "arch": n.arch.to_dict()} for n in self.nets]
        return {"format": FORMAT, "version": VERSION, "meta": meta}


def published_nets(path: str | Path) -> dict[str, list[ReferenceNet]]:
    """Device (ofakit name) -> its nets in MIT's published specialized nets file (`ofa_specialized_nets.json`:
    name -> {image_size, net_config}); nets of other targets (GPUs, CPUs, FLOPs) are left out."""
    from ofakit.interop.ofa_config import arch_from_ofa_config

    data = read_json_file(path, "published nets (ofa_specialized_nets.json)")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected an object of name -> {{image_size, net_config}}")
    out: dict[str, list[ReferenceNet]] = {}
    for name, net in data.items():
        m = re.match(r"^(?P<phone>[A-Za-z0-9-]+)_lat-(?P<ms>\d+(?:\.\d+)?)ms", name)
        if not m or m["phone"] not in MIT_PHONES:
            continue
        with warnings.catch_warnings():  # off-range resolutions (Pixel 1's 228/240 px nets) are legal here
            warnings.simplefilter("ignore")
            arch = arch_from_ofa_config(net["net_config"], net["image_size"])
        out.setdefault(MIT_PHONES[m["phone"]], []).append(ReferenceNet(name, arch, float(m["ms"])))
    return out


def measured_nets(path: str | Path) -> list[ReferenceNet]:
    """Subnets a user timed on the device: JSONL records `{"arch": {...}, "measured_ms": ...}`, as
    `ofakit.latency.measure.read_measured` reads them (the keys `ofakit latency fit` writes are allowed too)."""
    nets = [ReferenceNet(f"{r.arch.space}@{r.arch.resolution} #{arch_digest(r.arch)}", r.arch, r.measured_ms,
                         "measured") for r in read_measured(path)]
    if not nets:
        raise ConfigError(f"{path}: no measured subnet (JSONL lines of {{\"arch\": {{...}}, \"measured_ms\": ...}})")
    return nets


def base_estimates(base: OpModel, archs: Sequence[ArchConfig]) -> np.ndarray:
    """The base model's ms for `archs` (any MBConv space, any resolution), uncalibrated."""
    out = np.empty(len(archs))
    for space in {a.space for a in archs}:
        at = [i for i, a in enumerate(archs) if a.space == space]
        est = OpModelEstimator(base, get_space(space), resolution_range=(1, 10_000))
        out[at] = est.estimate_batch([archs[i] for i in at])
    return out


def calibration_factor(figures: np.ndarray, base: np.ndarray) -> float:
    """Geometric mean of figure / base: the one factor that minimizes the relative error over the nets."""
    return float(np.exp(np.mean(np.log(np.asarray(figures) / np.asarray(base)))))


def leave_one_out(figures: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Relative error (%) on each net of the factor calibrated on the others."""
    figures, base = np.asarray(figures, float), np.asarray(base, float)
    keep = ~np.eye(len(figures), dtype=bool)
    return np.array([(calibration_factor(figures[k], base[k]) * base[i] / figures[i] - 1) * 100
                     for i, k in enumerate(keep)])


def one_net_transfer(figures: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Relative errors (%) of calibrating on one net and testing on each other net, every ordered pair."""
    figures, base = np.asarray(figures, float), np.asarray(base, float)
    return np.array([(figures[i] / base[i] * base[j] / figures[j] - 1) * 100
                     for i in range(len(figures)) for j in range(len(figures)) if i != j])


def _range(spaces: Iterable[str], resolutions: Iterable[int]) -> tuple[int, int]:
    """The input resolutions served: the spaces' search ranges and the resolutions checked against figures."""
    values = [r for s in spaces for r in get_space(s).resolutions] + list(resolutions)
    return min(values), max(values)


# -- calibrated models ------------------------------------------------------------------------------------------
def fit_phone_model(device: str, nets: Sequence[ReferenceNet], base: OpModel, *,
                    spaces: Sequence[str] | None = None) -> Calibration:
    """Calibrate `device` on `nets` over `base`; serves `spaces` (default: the nets' spaces, and for published
    nets every space of SPACES)."""
    if not nets:
        raise LatencyLookupError(_no_reference(device, (spaces or SPACES)[0]))
    published = all(n.source == "published" for n in nets)
    spaces = tuple(spaces or (SPACES if published else dict.fromkeys(n.arch.space for n in nets)))
    figures = np.array([n.ms for n in nets])
    est = base_estimates(base, [n.arch for n in nets])
    loo = leave_one_out(figures, est) if len(nets) > 1 else np.array([])
    return Calibration(
        device=device,
        base=BaseRef(base.device, base.digest, base.path.name if base.path else None),
        spaces=spaces,
        resolution_range=_range(spaces, [n.arch.resolution for n in nets]),
        factor=calibration_factor(figures, est),
        nets=tuple(dataclasses.replace(n, base_ms=round(float(b), 4), digest=arch_digest(n.arch))
                   for n, b in zip(nets, est)),
        held_out=({"scheme": "leave one net out (calibrated on the others)", "errors_pct": loo.round(2).tolist(),
                   "max_pct": round(float(np.abs(loo).max()), 2)} if len(loo) else {"scheme": "none: one net only"}),
        source=SOURCE if published else "subnets timed on the device by the user",
        attribution=(ATTRIBUTION + "; " if published else "") + "base model: " + base.meta.attribution,
        license=(LICENSE + "; " if published else "") + "base table: " + base.meta.license,
        notes=(BUDGET_NOTE,) if published else (),
        date=datetime.date.today().isoformat(),
        ofakit_version=__version__,
    )


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write atomically; returns the path."""
    save_text_file(path, json.dumps(calibration.to_dict(), indent=1) + "\n", "calibrated latency model")
    return Path(path)


def what_to_measure(device: str, space: str) -> str:
    """The measurements that give `device` a latency model for `space`, and the command that fits it."""
    from ofakit.latency.devices import get_device

    tflite = get_device(device).backend.name == "tflite"
    how = " with TFLite's benchmark_model (1 thread, fp32, batch 1)" if tflite else ""
    return (f"time a few subnets of {space} end to end on the device{how}, write them as JSONL lines "
            f"{{\"arch\": {{...}}, \"measured_ms\": ...}} and fit a model on them: ofakit latency adapt "
            f"--device {device} --space {space} --records MEASURED.jsonl")


def _no_reference(device: str, space: str) -> str:
    return (f"device {device!r} has no calibrated latency model ({device}{SUFFIX}): no published or measured "
            f"end-to-end figure of it. To estimate space {space!r} on it, {what_to_measure(device, space)}")


def calibrations(device: str, dirs: Iterable[Path] | None = None) -> Iterator[tuple[Calibration, Path]]:
    """Every `<device>.calibrated.json` of `device` (canonical name) in the table folders, in the order searched."""
    for folder in table_dirs() if dirs is None else dirs:
        path = find_model_file(device, SUFFIX, [folder])
        if path is not None:
            data = read_model_file(path, "calibrated latency model", FORMAT, VERSION)
            yield build(Calibration, data.get("meta"), f"{path}: meta"), path


def read_calibration(device: str, space: str | None = None,
                     dirs: Iterable[Path] | None = None) -> tuple[Calibration, Path] | None:
    """The calibration of `device` (canonical name) and its path: the first one in the table folders that serves
    `space` (else the first found), or None when there is none."""
    found = list(calibrations(device, dirs))
    return next((c for c in found if space is None or space in c[0].spaces), found[0] if found else None)


def load_phone_model(device: str, space: str) -> OpModelEstimator:
    """The calibrated estimator of `device` (name or alias) for `space`.

    Raises LatencyLookupError when the device has no calibration (naming what to measure), when the calibration
    does not serve `space` (the shipped CIFAR bundle's 32x32 space on a phone), or when its base model changed.
    """
    from ofakit.latency.devices import get_device

    name = get_device(device).name
    found = read_calibration(name, space)
    if found is None:
        raise LatencyLookupError(_no_reference(name, space))
    cal, path = found
    lo, hi = cal.resolution_range
    if space not in cal.spaces:
        raise LatencyLookupError(
            f"device {name!r} is estimated from figures of {', '.join(cal.spaces)} nets at {lo}-{hi} px; nothing "
            f"was measured for space {space!r} on it. To estimate it, {what_to_measure(name, space)}")
    base = read_op_model(cal.base.device)
    if cal.base.digest != base.digest:
        raise LatencyLookupError(f"{path} was calibrated over another version of the op model of {base.device!r} "
                                 f"({base.path}); recalibrate it (python -m ofakit.predict.phones)")
    return OpModelEstimator(base, get_space(space), factor=cal.factor, name="calibrated", resolution_range=(lo, hi),
                            info=describe_calibration(cal, path, base), fitted=[n.digest for n in cal.nets],
                            path=path)


def describe_calibration(cal: Calibration, path: Path, base: OpModel) -> dict[str, Any]:
    """What a report says about a calibration: its base, how many nets, the error on nets left out, the source."""
    return {"kind": "calibrated transfer", "device": cal.device, "file": path.name, "spaces": list(cal.spaces),
            "resolution_range": list(cal.resolution_range), "base": describe(base), "factor": cal.factor,
            "nets": len(cal.nets), "held_out": cal.held_out, "source": cal.source, "attribution": cal.attribution,
            "license": cal.license, "notes": list(cal.notes)}


def table_free_models(device: str) -> list[dict[str, Any]]:
    """How `device` (name or alias) is estimated where it has no table of a space: its op model and calibrations,
    each described as `describe` / `describe_calibration` do (for `ofakit devices`)."""
    from ofakit.latency.devices import get_device

    name = get_device(device).name
    out = []
    if find_model_file(name, OP_MODEL_SUFFIX) is not None:
        out.append(describe(read_op_model(name)))
    for cal, path in calibrations(name):
        out.append(describe_calibration(cal, path, read_op_model(cal.base.device)))
    return out


def has_table_free_model(device: str, space: str) -> bool:
    """Whether `device` (canonical name) has an op model serving `space` or a calibration (which serves `space` or
    says what to measure for it)."""
    if read_calibration(device) is not None:
        return True
    if find_model_file(device, OP_MODEL_SUFFIX) is None:
        return False
    return space in read_op_model(device).meta.spaces


def table_free_estimator(device: str, space: str) -> OpModelEstimator | None:
    """For a device with no table of `space`: its op model where it serves the space, else its calibration (which
    names what to measure for a space it does not serve); None for a device with neither that ofakit can profile,
    and for one it cannot (TFLite phones) the error that says what to measure."""
    from ofakit.latency.devices import get_device

    spec = get_device(device)
    if find_model_file(spec.name, OP_MODEL_SUFFIX) is not None and space in read_op_model(spec.name).meta.spaces:
        return load_op_model(spec.name, space)
    if read_calibration(spec.name) is None and spec.backend.name != "tflite":
        return None
    return load_phone_model(spec.name, space)


# -- rebuilding the shipped files -------------------------------------------------------------------------------
def fit_base(device: str, table: LatencyTable, nets: Sequence[ReferenceNet], spaces: Sequence[str]) -> OpModel:
    """The op model of a base device serving `spaces`, checked against the device's own published `nets` (those the
    table does not hold are data the model was not fitted on)."""
    checked = [*table.resolutions, *(n.arch.resolution for n in nets)]
    model = fit_op_model(table, spaces=spaces, resolution_range=_range(spaces, checked))
    if nets:
        est = base_estimates(model, [n.arch for n in nets])
        model.meta = dataclasses.replace(model.meta, published_nets={
            "note": "uncalibrated estimates; " + BUDGET_NOTE,
            "nets": [{"name": n.name, "published_ms": n.ms, "estimate_ms": round(float(e), 3),
                      "error_pct": round(float((e / n.ms - 1) * 100), 2)} for n, e in zip(nets, est)]})
    return model


def build_shipped(nets_path: str | Path, out: str | Path, devices: Sequence[str] = ()) -> list[Path]:
    """Refit the base op models on their tables (found as usual) and recalibrate the phones on MIT's published
    nets; returns the files written."""
    from ofakit.latency.table import find_table

    nets = published_nets(nets_path)
    out = Path(out)
    written = []
    bases: dict[str, OpModel] = {}
    for device, (space, serves) in BASE_MODELS.items():
        model = fit_base(device, find_table(device, space), nets.get(device, []), serves)
        model.path = out / f"{device}{OP_MODEL_SUFFIX}"
        bases[device] = model
        if not devices or device in devices:
            written.append(model.save(model.path))
    for device, base in BASES.items():
        if not devices or device in devices:
            calibration = fit_phone_model(device, nets.get(device, []), bases[base])
            written.append(save_calibration(calibration, out / f"{device}{SUFFIX}"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild the shipped phone models from MIT's published nets (--nets), or calibrate a device on subnets timed on
    it (--device D --records MEASURED.jsonl, over the op model of --base)."""
    from ofakit.errors import OfakitError
    from ofakit.latency.devices import get_device, shipped_dir

    parser = argparse.ArgumentParser(prog="python -m ofakit.predict.phones", description=main.__doc__)
    parser.add_argument("--nets", help="MIT's ofa_specialized_nets.json: rebuild the shipped files")
    parser.add_argument("--records", help="JSONL of {\"arch\": ..., \"measured_ms\": ...} timed on --device")
    parser.add_argument("--device", action="append", default=[], help="only this device (repeatable)")
    parser.add_argument("--base", default="note10", help="the op model to calibrate over (default: note10)")
    parser.add_argument("--out", help="folder to write to (default: the shipped latency_tables/ for --nets, "
                        "./latency_tables for --records)")
    args = parser.parse_args(argv)
    args.out = args.out or ("latency_tables" if args.records else str(shipped_dir("latency_tables")))
    try:
        if args.records:
            if len(args.device) != 1:
                parser.error("--records needs exactly one --device")
            name = get_device(args.device[0]).name
            target = Path(args.out) / f"{name}{SUFFIX}"
            if target.exists():
                parser.exit(2, f"error: {target} exists (a calibration serves one set of spaces; the first file found "
                               f"per space wins): pass --out with another folder of $OFAKIT_TABLES_PATH\n")
            calibration = fit_phone_model(name, measured_nets(args.records), read_op_model(args.base))
            written = [save_calibration(calibration, target)]
        elif args.nets:
            written = build_shipped(args.nets, args.out, args.device)
        else:
            parser.error("give --nets (rebuild the shipped files) or --device and --records")
    except OfakitError as exc:
        parser.exit(2, f"error: {exc}\n")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

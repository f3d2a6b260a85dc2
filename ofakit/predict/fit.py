"""Fitting pipelines: draw subnets, measure each one once into a resumable JSONL file of records, fit a predictor on
all records and store it.

- `fit_latency`: subnets timed end to end on a device (`ofakit.latency.measure`), a learned latency predictor from
  the LUT sum and arch features (`ofakit.predict.latency`), as `ofakit latency fit` runs it.
- `fit_accuracy`: subnets spread over the MACs range, BN-recalibrated and evaluated (`ofakit.train.evaluate`), an
  accuracy predictor stored in the bundle (`ofakit.predict.accuracy`), as `ofakit predictor fit` runs it; the
  records follow OFA's accuracy-dataset recipe (Cai et al., "Once-for-All", ICLR 2020, section 3.4).
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ofakit.errors import ConfigError
from ofakit.io import check_output_file
from ofakit.latency.devices import DeviceSpec
from ofakit.latency.measure import (ValidateConfig, check_repetitions, check_resolutions, measure_latency_records,
                                    records_path_for, sample_archs)
from ofakit.latency.table import LatencyTable
from ofakit.predict.accuracy import AccuracyPredictor, min_records
from ofakit.predict.latency import MIN_RECORDS, LatencyPredictor, fit_latency_predictor, predictor_filename
from ofakit.predict.records import (RECORDS, append_record, one_per_network, read_records, spread_over_macs,
                                    uniform_grid)
from ofakit.space import SearchSpace

MIN_ACCURACY_SAMPLES = min_records()  # 12: two per cross-validation fold besides the held-out subnets

Progress = Callable[[int, int], None]  # (records done, records wanted)


# -- latency ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyFitConfig:
    """Which subnets `fit_latency` measures, how, and where it keeps them."""

    samples: int = 40  # random subnets
    resolutions: tuple[int, ...] = ()  # drawn from these (empty: every resolution the table covers)
    seed: int = 0  # seeds the subnets, folds and trees
    reps: int = 8  # timed rounds per pass
    calls: int = 3  # timed calls per subnet and round
    uniform: bool = False  # also every uniform subnet at 3 of the resolutions (the corners of the space)
    out: Path | None = None  # predictor JSON (None: latency_tables/<device>_<space>.predictor.json)
    records: Path | None = None  # records JSONL (None: beside `out`, records_path_for)


def latency_fit_paths(device: str, space: str, cfg: LatencyFitConfig) -> tuple[Path, Path]:
    """Where `fit_latency` stores the predictor and keeps its records."""
    out = cfg.out or Path("latency_tables") / predictor_filename(device, space)
    return out, cfg.records or records_path_for(out)


def fit_latency(device: DeviceSpec, space: SearchSpace, table: LatencyTable, cfg: LatencyFitConfig, *,
                on_group: Progress | None = None) -> LatencyPredictor:
    """Measure `cfg.samples` random subnets (plus the uniform ones with `cfg.uniform`) end to end on `device`, those
    not in the records file yet, and fit and store the learned latency predictor on every record in it.

    Args:
        table: the device's table for the space.
        on_group: called after each measured group with (records done, records wanted).

    Returns:
        The predictor, saved (its `path` is where).
    """
    if cfg.samples < MIN_RECORDS:
        raise ConfigError(f"--samples must be at least {MIN_RECORDS}, got {cfg.samples}")
    check_repetitions(reps=cfg.reps, calls=cfg.calls)
    resolutions = check_resolutions(table, cfg.resolutions)
    measure = ValidateConfig(samples=cfg.samples, resolutions=resolutions, seed=cfg.seed, reps=cfg.reps,
                             calls=cfg.calls, group=20)
    out, records_path = latency_fit_paths(device.name, space.name, cfg)
    check_output_file(out, "the latency predictor")  # before any measuring: a folder in the way is one line
    check_output_file(records_path, "the latency records")
    archs = sample_archs(space, resolutions, cfg.samples, random.Random(cfg.seed))
    if cfg.uniform:  # a uniform subnet whose network the random draw holds already is not measured again
        archs = one_per_network(space, archs + uniform_grid(space, resolutions))
    records = measure_latency_records(device, space, table, archs, records_path, measure,
                                      on_group=None if on_group is None else lambda done, n, _: on_group(done, n))
    predictor = fit_latency_predictor(table, records, space=space, seed=cfg.seed, meta={
        "source": f"ofakit latency fit --device {device.name} --space {space.name} --samples {cfg.samples} "
                  f"--seed {cfg.seed}" + " --uniform" * cfg.uniform, "records_file": records_path.name})
    predictor.save(out)
    return predictor


# -- accuracy -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccuracyFitConfig:
    """Which subnets `fit_accuracy` evaluates, and how."""

    data: str  # data source: its train split recalibrates BN, its val split scores
    samples: int = 500  # subnets spread over the MACs range
    val_batches: int | None = None  # cap on validation batches per subnet (None: the whole val split)
    calibration_batches: int = 8  # training batches for BN statistics
    seed: int = 0  # seeds the subnets, the evaluation subset and the fit
    uniform: bool = False  # also every uniform subnet at 3 resolutions

    def __post_init__(self) -> None:
        if self.val_batches is not None and self.val_batches < 1:
            raise ConfigError(f"--val-batches must be at least 1 (or left out for the whole val split), got "
                              f"{self.val_batches}")
        if self.calibration_batches < 1:
            raise ConfigError(f"--calibration-batches must be at least 1, got {self.calibration_batches}")


def fit_accuracy(bundle: Path, cfg: AccuracyFitConfig, *, progress: Progress | None = None) -> AccuracyPredictor:
    """Evaluate the subnets of `cfg` on the bundle's supernet (those not in its accuracy records yet, appended one by
    one), fit the accuracy predictor on them, and store it in the bundle with its provenance in bundle.json.

    Records evaluated another way (data, images, calibration, seed) are refused, not mixed in.

    Args:
        progress: called with (records done, records wanted) before the first evaluation and after each one.
    """
    from ofakit.bundle import load_bundle
    from ofakit.predict.accuracy import fit_accuracy_predictor
    from ofakit.train.data import load_dataset
    from ofakit.train.evaluate import EvalConfig, evaluate_subnet

    if cfg.samples < MIN_ACCURACY_SAMPLES:
        raise ConfigError(f"--samples must be at least {MIN_ACCURACY_SAMPLES}, got {cfg.samples}")
    supernet, info = load_bundle(bundle)
    space = supernet.space
    train, val = load_dataset(cfg.data, "train"), load_dataset(cfg.data, "val")
    if train.num_classes != info.num_classes:
        raise ConfigError(f"data {cfg.data!r} has {train.num_classes} classes, the bundle {info.num_classes}")
    archs = spread_over_macs(space, cfg.samples, random.Random(cfg.seed))
    if cfg.uniform:  # a uniform subnet whose network the spread holds already is not added again
        archs = one_per_network(space, archs + uniform_grid(space))
    path = bundle / RECORDS
    ecfg = EvalConfig(max_batches=cfg.val_batches, recalibration_batches=cfg.calibration_batches, seed=cfg.seed)
    images = len(val) if ecfg.max_batches is None else min(len(val), ecfg.max_batches * ecfg.batch_size)
    evaluation = {"data": Path(str(cfg.data)).name, "val_images": images,
                  "calibration_images": ecfg.recalibration_batches * ecfg.recalibration_batch_size, "seed": ecfg.seed}
    done: dict[tuple, float] = {}  # by network (`space.key`): an arch recorded with other skipped slots counts
    for arch, top1 in read_records(path, evaluation).items():
        done.setdefault(space.key(arch), top1)
    todo = [a for a in archs if space.key(a) not in done]
    if progress:
        progress(len(archs) - len(todo), len(archs))
    for i, arch in enumerate(todo, len(archs) - len(todo) + 1):
        done[space.key(arch)] = evaluate_subnet(supernet, arch, train, val, ecfg)
        append_record(path, arch, done[space.key(arch)], evaluation)
        if progress:
            progress(i, len(archs))
    predictor = fit_accuracy_predictor(space, archs, [done[space.key(a)] for a in archs], seed=cfg.seed)
    predictor.meta["data"] = cfg.data
    predictor.meta["evaluation"] = evaluation
    predictor.save(bundle)
    record_in_bundle(bundle, predictor)
    return predictor


def record_in_bundle(bundle: Path, predictor: AccuracyPredictor) -> None:
    """Keep bundle.json's provenance in step with the predictor stored beside it (written atomically): a fitted
    predictor's metrics go to metrics.predictor; for one with none (imported from MIT) metrics.predictor is dropped,
    so that it never describes a predictor that was replaced."""
    from ofakit.bundle import BUNDLE_JSON, read_bundle_info
    from ofakit.io import atomic_write_json

    info = read_bundle_info(bundle)
    meta = predictor.meta
    metrics = {k: v for k, v in info.metrics.items() if k != "predictor"}
    if "heldout" in meta:
        metrics["predictor"] = {
            "kind": predictor.kind, "samples": meta.get("samples"), "heldout": meta.get("heldout"),
            "cv_kendall_tau": meta.get("cv_kendall_tau"), "evaluation": meta.get("evaluation")}
    elif "predictor" not in info.metrics:
        return
    atomic_write_json(bundle / BUNDLE_JSON, asdict(replace(info, metrics=metrics)))

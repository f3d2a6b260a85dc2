"""`ofakit predictor fit --bundle B --data DATA --samples N`: fit and store a bundle's accuracy predictor."""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ofakit.cli.output import print_table

if TYPE_CHECKING:
    from ofakit.predict.accuracy import AccuracyPredictor


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predictor", help="fit a bundle's accuracy predictor", description="Accuracy predictors.")
    psub = p.add_subparsers(dest="predictor_command", metavar="ACTION", required=True)
    f = psub.add_parser("fit", help="evaluate N BN-recalibrated subnets and fit the predictor (resumable)")
    f.add_argument("--bundle", type=Path, required=True)
    f.add_argument("--data", required=True, help="data source: train split calibrates BN, val split scores")
    f.add_argument("--samples", type=int, default=500, help="subnets to evaluate (default 500)")
    f.add_argument("--val-batches", type=int, default=None, help="cap on validation batches per subnet")
    f.add_argument("--calibration-batches", type=int, default=8)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--uniform", action="store_true",
                   help="also evaluate every uniform subnet (one kernel, expand and depth everywhere) at 3 "
                        "resolutions, which random samples never reach (81 more for the OFA MobileNetV3 spaces)")
    f.set_defaults(run=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from ofakit.bundle import load_bundle
    from ofakit.errors import ConfigError
    from ofakit.predict.accuracy import fit_accuracy_predictor
    from ofakit.predict.records import RECORDS, append_record, read_records, spread_over_macs, uniform_grid
    from ofakit.train.data import load_dataset
    from ofakit.train.evaluate import EvalConfig, evaluate_subnet

    if args.samples < 10:
        raise ConfigError(f"--samples must be at least 10, got {args.samples}")
    supernet, info = load_bundle(args.bundle)
    space = supernet.space
    train, val = load_dataset(args.data, "train"), load_dataset(args.data, "val")
    if train.num_classes != info.num_classes:
        raise ConfigError(f"data {args.data!r} has {train.num_classes} classes, the bundle {info.num_classes}")
    archs = spread_over_macs(space, args.samples, random.Random(args.seed))
    if args.uniform:
        archs = list(dict.fromkeys(archs + uniform_grid(space)))
    path = args.bundle / RECORDS
    cfg = EvalConfig(max_batches=args.val_batches, recalibration_batches=args.calibration_batches, seed=args.seed)
    images = len(val) if cfg.max_batches is None else min(len(val), cfg.max_batches * cfg.batch_size)
    evaluation = {"data": Path(str(args.data)).name, "val_images": images,
                  "calibration_images": cfg.recalibration_batches * cfg.recalibration_batch_size, "seed": cfg.seed}
    done = read_records(path, evaluation)
    todo = [a for a in archs if a not in done]
    with Progress() as bar:
        task = bar.add_task("evaluating subnets", total=len(archs), completed=len(archs) - len(todo))
        for arch in todo:
            top1 = evaluate_subnet(supernet, arch, train, val, cfg)
            append_record(path, arch, top1, evaluation)
            done[arch] = top1
            bar.advance(task)
    records = [(a, done[a]) for a in archs]
    predictor = fit_accuracy_predictor(space, [a for a, _ in records], [t for _, t in records], seed=args.seed)
    predictor.meta["data"] = args.data
    predictor.meta["evaluation"] = evaluation
    predictor.save(args.bundle)
    _record_in_bundle(args.bundle, predictor)
    held = predictor.meta["heldout"]
    print_table("accuracy predictor", ["", "value"], [
        ["chosen", predictor.kind], ["samples", str(len(records))],
        ["cv Kendall tau", ", ".join(f"{k} {v:.3f}" for k, v in predictor.meta["cv_kendall_tau"].items())],
        ["held-out Kendall tau", f"{held['kendall_tau']:.3f}"], ["held-out Spearman", f"{held['spearman']:.3f}"],
        ["held-out RMSE", f"{100 * held['rmse']:.2f} points"]])
    print(f"predictor stored in {args.bundle}", file=sys.stderr)
    return 0


def _record_in_bundle(bundle: Path, predictor: AccuracyPredictor) -> None:
    """Keep bundle.json's provenance in step: metrics.predictor describes the predictor now stored beside it."""
    import json

    from ofakit.bundle import BUNDLE_JSON
    from ofakit.io import atomic_write_json

    path = bundle / BUNDLE_JSON
    data = json.loads(path.read_text())
    meta = predictor.meta
    data.setdefault("metrics", {})["predictor"] = {
        "kind": predictor.kind, "samples": meta.get("samples"), "heldout": meta.get("heldout"),
        "cv_kendall_tau": meta.get("cv_kendall_tau"), "evaluation": meta.get("evaluation")}
    atomic_write_json(path, data)

"""`ofakit predictor fit --bundle B --data DATA --samples N`: fit and store a bundle's accuracy predictor."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofakit.cli.output import print_table


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

    from ofakit.predict.fit import AccuracyFitConfig, fit_accuracy

    cfg = AccuracyFitConfig(data=args.data, samples=args.samples, val_batches=args.val_batches,
                            calibration_batches=args.calibration_batches, seed=args.seed, uniform=args.uniform)
    bar, task = Progress(), []  # the bar starts with the first evaluation, after the inputs are checked

    def progress(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task("evaluating subnets", total=total))
        bar.update(task[0], completed=done)

    try:
        predictor = fit_accuracy(args.bundle, cfg, progress=progress)
    finally:
        bar.stop()
    meta = predictor.meta
    held = meta["heldout"]
    print_table("accuracy predictor", ["", "value"], [
        ["chosen", predictor.kind], ["samples", str(meta["samples"])],
        ["cv Kendall tau", ", ".join(f"{k} {v:.3f}" for k, v in meta["cv_kendall_tau"].items())],
        ["held-out Kendall tau", f"{held['kendall_tau']:.3f}"], ["held-out Spearman", f"{held['spearman']:.3f}"],
        ["held-out RMSE", f"{100 * held['rmse']:.2f} points"]])
    print(f"predictor stored in {args.bundle}", file=sys.stderr)
    return 0

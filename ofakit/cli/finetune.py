"""`ofakit finetune --bundle B --arch ARCH.json --data DATA --out RUN_DIR [--epochs N ...]`: fine-tune one subnet.

The run is an `ofakit train` run with one fixed-subnet stage that starts from the bundle's weights: re-running the
same command resumes it, and `torchrun ... -m ofakit finetune ...` spreads it over GPUs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofakit.cli.output import ARCH_HELP, bundle_arch
from ofakit.cli.train import add_join_timeout


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune one subnet of a bundle (resumable); export works on the result",
                       description="Fine-tune the subnet ARCH of the bundle's supernet on DATA, as OFA fine-tunes "
                                   "its specialized nets (25-75 epochs). Writes RUN_DIR/bundle and RUN_DIR/arch.json "
                                   "for `ofakit export`. Re-running the same command on the same --out resumes.")
    p.add_argument("--bundle", required=True, help="bundle directory or shipped bundle name whose weights start "
                                                   "the run")
    p.add_argument("--arch", required=True, help=ARCH_HELP + " (e.g. from `ofakit specialize --out`)")
    p.add_argument("--data", required=True, help="digits, an .npz, the CIFAR-10 JPEG .npz, or an ImageFolder "
                                                 "directory, with the bundle's classes")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, bundle, arch.json)")
    p.add_argument("--epochs", type=int, default=25, help="default 25 (OFA: 25-75)")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate at --batch-size, cosine decay "
                                                          "(default 0.01)")
    p.add_argument("--batch-size", type=int, default=64, help="images per process per step (default 64)")
    p.add_argument("--weight-decay", type=float, default=3e-5, help="default 3e-5")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up (default 0)")
    p.add_argument("--kd-weight", type=float, default=0.0,
                   help="distil from the bundle's largest subnet with this weight (default 0: labels only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set augment=false --set stages.0.kd_temperature=2")
    add_join_timeout(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or tables")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.bundles import resolve_bundle
    from ofakit.train.finetune import FinetuneConfig, check_run_dir, finetune, finetune_recipe

    cfg = FinetuneConfig(epochs=args.epochs, lr=args.lr, warmup_epochs=args.warmup_epochs,
                         batch_size=args.batch_size, weight_decay=args.weight_decay, kd_weight=args.kd_weight,
                         seed=args.seed)
    bundle = resolve_bundle(args.bundle)
    recipe = finetune_recipe(bundle, bundle_arch(args.arch, bundle), args.data, cfg, args.overrides)
    check_run_dir(args.out)  # before torch is imported
    result = finetune(recipe, args.out, progress=not args.quiet, join_timeout=args.join_timeout)
    if not result.main:
        return 0
    if result.already_finished:
        print(f"{args.out} is already finished; nothing was trained or written (its bundle: {result.bundle}, its "
              f"arch: {result.arch})", file=sys.stderr)
        return 0
    top1 = "" if result.top1 is None else f" (validation top-1 {100 * result.top1:.2f} %)"
    print(f"fine-tuned bundle written to {result.bundle}{top1}, its arch to {result.arch}; ship it with: "
          f"ofakit export --bundle {result.bundle} --arch {result.arch} --format onnx --out model.onnx",
          file=sys.stderr)
    return 0

"""`ofakit train --recipe RECIPE.yaml --out RUN_DIR [--set key=value ...]`: train (or resume) a supernet.

Runs on one CPU or GPU as it is, and on many GPUs and nodes as
`torchrun --nproc_per_node N --nnodes M ... -m ofakit train --recipe ... --out ...` (the run directory on a
filesystem every node shares). Only the main process (rank 0) prints, except errors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or resume a supernet from a recipe",
                       description="Train a supernet from a recipe (progressive shrinking, sandwich or uniform "
                                   "sampling). Re-running the same command on the same --out resumes.")
    p.add_argument("--recipe", type=Path, required=True, help="recipe YAML (see recipes/)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, bundle)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set batch_size=32 --set stages.0.epochs=1")
    add_join_timeout(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or tables")
    p.set_defaults(run=run)


def add_join_timeout(p: argparse.ArgumentParser) -> None:
    """--join-timeout (shared with `ofakit finetune`)."""
    from ofakit.train.config import JOIN_TIMEOUT

    p.add_argument("--join-timeout", type=float, default=JOIN_TIMEOUT, metavar="SECONDS",
                   help="under torchrun: how long a process waits for the others to join before it stops with an "
                        f"error (default {JOIN_TIMEOUT:g})")


def run(args: argparse.Namespace) -> int:
    from ofakit.train.config import load_recipe
    from ofakit.train.run_dir import check_run_dir

    cfg = load_recipe(args.recipe, args.overrides)
    check_run_dir(args.out, cfg.digest(), cfg.to_dict())  # before torch is imported
    from ofakit.train.loop import train

    result = train(cfg, args.out, recipe_name=args.recipe.name, progress=not args.quiet,
                   join_timeout=args.join_timeout)
    if result.main:
        print(f"{args.out} is already finished; nothing was trained or written (its bundle: {result.bundle})"
              if result.already_finished else f"bundle written to {result.bundle}", file=sys.stderr)
    return 0

"""`ofakit status RUN_DIR [--json] [--plot PNG]`: where a training or fine-tuning run stands (stage, epoch, pace,
time left, last checkpoint, evaluations), read from its folder without torch and without writing to it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="where a training run stands: stage, epoch, pace, time left",
                       description="Where the run in RUN_DIR (an `ofakit train` or `ofakit finetune` --out) stands: "
                                   "training, stopped or finished; its stage, epoch and step; its pace and the "
                                   "training time left at that pace; its last checkpoint; its last "
                                   "evaluations. Reads the folder only: safe while the run trains.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's folder (its --out)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout instead of text")
    p.add_argument("--plot", type=Path, metavar="PNG",
                   help="also draw the loss, learning rate and evaluations' top-1 against the step (needs matplotlib)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.cli.output import print_json
    from ofakit.train.status import describe, plot_status, run_status

    if args.plot:  # before anything is printed: a path in the way, or no matplotlib, is one line
        from ofakit.io import check_output_file
        from ofakit.plot import pyplot

        check_output_file(args.plot, "the plot")
        pyplot("--plot")
    status = run_status(args.run_dir)
    if args.json:
        print_json(status.to_dict())
    else:
        print("\n".join(describe(status)))
    if args.plot:
        print(f"plot written to {plot_status(status, args.plot)}", file=sys.stderr)
    return 0

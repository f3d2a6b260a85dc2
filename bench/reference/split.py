"""Hold out part of CIFAR-10's training set for the reference bundle's accuracy predictor.

    python -m bench.reference.split [--data CIFAR10-JPEG.npz] --holdout 5000 --out RUN/cifar10-45k.npz

Writes an array dataset (see ofakit.train.data): `train_*` = the other 45,000 training images (the supernet trains on
these), `val_*` = the held-out 5,000 (balanced, 500 per class; BN-recalibrated subnets are scored on them to fit the
predictor), with CIFAR-10's class names and normalisation. The 10,000 test images stay untouched for the final figures.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from bench.reference import DATA_HELP, cifar10_archive
from ofakit.io import atomic_write_npz
from ofakit.train.data import load_dataset


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=cifar10_archive(), help=DATA_HELP)
    p.add_argument("--holdout", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    ds = load_dataset(args.data, "train")
    rng = np.random.default_rng(args.seed)
    per_class = args.holdout // ds.num_classes
    held = np.sort(np.concatenate([rng.permutation(np.flatnonzero(ds.labels == c))[:per_class]
                                   for c in range(ds.num_classes)]))
    keep = np.setdiff1d(np.arange(len(ds)), held)
    atomic_write_npz(args.out, train_images=ds.images[keep], train_labels=ds.labels[keep],
                     val_images=ds.images[held], val_labels=ds.labels[held], classes=np.array(ds.classes),
                     mean=np.array(ds.mean), std=np.array(ds.std))
    print(json.dumps({"train": int(len(keep)), "val": int(len(held)), "seed": args.seed, "out": args.out}))


if __name__ == "__main__":
    main()

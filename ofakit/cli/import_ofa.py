"""`ofakit import-ofa --checkpoint FILE --space S --out DIR`: turn a MIT once-for-all checkpoint into a bundle."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofakit.errors import BundleError
from ofakit.space import get_space


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-ofa", help="convert a MIT once-for-all supernet checkpoint into a bundle",
                       description="Convert a MIT once-for-all checkpoint (ofa_mbv3_d234_e346_k357_w1.0/w1.2, "
                                   "ofa_proxyless_d234_e346_k357_w1.3, ofa_resnet50) into an ofakit bundle. "
                                   "The file is read with torch.load(weights_only=True).")
    p.add_argument("--checkpoint", type=Path, required=True, help="MIT checkpoint (.pth / model zoo file)")
    p.add_argument("--space", required=True, help="space of the checkpoint, e.g. ofa-mbv3-w1.2")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--dataset", default="imagenet", help="what the weights were trained on (default imagenet)")
    p.add_argument("--force", action="store_true", help="overwrite an existing bundle")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.bundle import BUNDLE_JSON, save_bundle

    get_space(args.space)  # fail fast on a bad name, before importing torch
    if args.out.exists() and not args.out.is_dir():
        raise BundleError(f"--out {str(args.out)!r} is a file; a bundle is a directory")
    if (args.out / BUNDLE_JSON).exists() and not args.force:
        raise BundleError(f"{args.out} already holds a bundle; pass --force to overwrite it")
    if not args.checkpoint.is_file():
        raise BundleError(f"checkpoint {str(args.checkpoint)!r} does not exist")

    from ofakit.interop.ofa_checkpoint import import_ofa_supernet

    supernet = import_ofa_supernet(args.checkpoint, args.space)
    info = save_bundle(args.out, supernet, dataset=args.dataset,
                       training={"source": "MIT once-for-all checkpoint", "checkpoint": args.checkpoint.name})
    n = sum(p.numel() for p in supernet.parameters())
    print(f"imported {args.checkpoint.name} ({n / 1e6:.2f} M parameters, {info.num_classes} classes) "
          f"into bundle {args.out}", file=sys.stderr)
    return 0

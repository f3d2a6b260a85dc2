"""`ofakit import-ofa [--checkpoint FILE] [--predictor FILE] --space S --out DIR`: turn a MIT once-for-all supernet
checkpoint into a bundle, and/or MIT's accuracy predictor into the bundle's predictor."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ofakit.errors import BundleError, ConfigError
from ofakit.space import get_space

if TYPE_CHECKING:
    from ofakit.predict.accuracy import AccuracyPredictor


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-ofa", help="convert a MIT once-for-all supernet checkpoint or accuracy predictor",
                       description="Convert a MIT once-for-all checkpoint (ofa_mbv3_d234_e346_k357_w1.0/w1.2, "
                                   "ofa_proxyless_d234_e346_k357_w1.3, ofa_resnet50) into an ofakit bundle, and/or "
                                   "MIT's accuracy predictor (acc_predictor.pth, ofa.tutorial or ofa.nas layout) into "
                                   "the bundle's predictor.json + predictor.safetensors. Files are read with "
                                   "torch.load(weights_only=True).")
    p.add_argument("--checkpoint", type=Path, help="MIT supernet checkpoint (.pth / model zoo file)")
    p.add_argument("--predictor", type=Path, help="MIT accuracy predictor (acc_predictor.pth)")
    p.add_argument("--resolutions", type=int, nargs="+", metavar="R",
                   help="ofa.nas predictors only: its encoder's image_size_list, in order (default: inferred from "
                        "the number of resolution inputs)")
    p.add_argument("--space", required=True, help="space of the checkpoint, e.g. ofa-mbv3-w1.2")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write (a predictor alone may go "
                                                            "into an existing bundle)")
    p.add_argument("--dataset", default="imagenet", help="what the weights were trained on (default imagenet)")
    p.add_argument("--force", action="store_true", help="overwrite an existing bundle / predictor")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.bundle import BUNDLE_JSON, WEIGHTS, save_bundle
    from ofakit.io import check_output_dir
    from ofakit.predict.accuracy import PREDICTOR_ARRAYS, PREDICTOR_JSON

    if args.checkpoint is None and args.predictor is None:
        raise ConfigError("nothing to import: give --checkpoint FILE (a supernet), --predictor FILE (an accuracy "
                          "predictor), or both")
    get_space(args.space)  # fail fast on a bad name, before importing torch
    check_output_dir(args.out, "the bundle", files=(BUNDLE_JSON, WEIGHTS, PREDICTOR_JSON, PREDICTOR_ARRAYS))
    if args.checkpoint is not None:
        if (args.out / BUNDLE_JSON).exists() and not args.force:
            raise BundleError(f"{args.out} already holds a bundle; pass --force to overwrite it")
        _check_input(args.checkpoint, "checkpoint")
    predictor = _read_predictor(args) if args.predictor is not None else None  # checked before anything is written

    if args.checkpoint is not None:
        from ofakit.interop.ofa_checkpoint import import_ofa_supernet

        supernet = import_ofa_supernet(args.checkpoint, args.space)
        info = save_bundle(args.out, supernet, dataset=args.dataset,
                           training={"source": "MIT once-for-all checkpoint", "checkpoint": args.checkpoint.name})
        _remove_stale(args.out, keep_predictor=args.predictor is not None)
        n = sum(p.numel() for p in supernet.parameters())
        print(f"imported {args.checkpoint.name} ({n / 1e6:.2f} M parameters, {info.num_classes} classes) "
              f"into bundle {args.out}", file=sys.stderr)
    if predictor is not None:
        from ofakit.predict.fit import record_in_bundle
        from ofakit.predict.ofa_predictor import predictor_resolutions

        args.out.mkdir(parents=True, exist_ok=True)
        if (args.out / BUNDLE_JSON).exists():  # first: a kill before the save leaves no stale description
            record_in_bundle(args.out, predictor)  # (drops metrics.predictor: MIT's file carries no metrics)
        predictor.save(args.out)
        if not (args.out / "bundle.json").exists():  # a predictor-only bundle: enough to specialize, no weights
            from dataclasses import asdict

            from ofakit import __version__
            from ofakit.bundle import BUNDLE_JSON, BundleInfo
            from ofakit.io import atomic_write_json

            space = get_space(args.space)
            info = BundleInfo(space=space.name, num_classes=space.num_classes, dataset=args.dataset,
                              training={"source": "MIT once-for-all accuracy predictor only; no supernet weights "
                                                  "(add them with --checkpoint)"}, ofakit_version=__version__)
            atomic_write_json(args.out / BUNDLE_JSON, asdict(info))
        allowed = ", ".join(str(r) for r in predictor_resolutions(predictor, get_space(args.space)))
        print(f"imported {args.predictor.name} (MIT {predictor.encoding} layout; searches use resolutions "
              f"{allowed}) into {args.out}", file=sys.stderr)
    return 0


def _remove_stale(out: Path, *, keep_predictor: bool) -> None:
    """Once new weights have replaced a bundle's (--force): delete what described the old weights, so that nothing later
    takes it for the new supernet's (`export` recalibrating BN on the old images, `predictor fit` resuming from the
    old accuracy records, `specialize` ranking by the old predictor)."""
    from ofakit.bundle import CALIBRATION
    from ofakit.predict.accuracy import PREDICTOR_ARRAYS, PREDICTOR_JSON
    from ofakit.predict.records import RECORDS

    names = [CALIBRATION, RECORDS] + ([] if keep_predictor else [PREDICTOR_JSON, PREDICTOR_ARRAYS])
    removed = [name for name in names if (out / name).is_file()]
    for name in removed:
        (out / name).unlink()
    if removed:
        print(f"removed the replaced bundle's {', '.join(removed)} from {out} (they described its old weights)",
              file=sys.stderr)


def _check_input(path: Path, what: str) -> None:
    """Before anything is written: the input is there, and a file."""
    if path.is_dir():
        raise BundleError(f"{what} {str(path)!r} is a folder; expected a PyTorch file (.pth)")
    if not path.is_file():
        raise BundleError(f"{what} {str(path)!r} does not exist")


def _read_predictor(args: argparse.Namespace) -> AccuracyPredictor:
    """MIT's accuracy predictor converted for --space; refuses a bundle of another space or an existing predictor."""
    from ofakit.bundle import BUNDLE_JSON, read_bundle_info
    from ofakit.predict.accuracy import PREDICTOR_JSON
    from ofakit.predict.ofa_predictor import import_ofa_predictor

    space = get_space(args.space).name
    if args.checkpoint is None and (args.out / BUNDLE_JSON).exists():
        held = read_bundle_info(args.out).space
        if held != space:
            raise BundleError(f"{args.out} holds a bundle of space {held!r}, not {space!r}; pass --space {held} "
                              "if the predictor is for it, or choose another --out")
    if (args.out / PREDICTOR_JSON).exists() and not args.force:
        raise BundleError(f"{args.out} already holds an accuracy predictor; pass --force to overwrite it")
    _check_input(args.predictor, "predictor")
    try:
        return import_ofa_predictor(args.predictor, space, resolutions=args.resolutions)
    except BundleError as exc:  # every message names the file
        raise BundleError(str(exc) if str(args.predictor) in str(exc) else f"{args.predictor}: {exc}") from None

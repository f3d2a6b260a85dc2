"""`ofakit export`: ship one subnet of a bundle as a verified ONNX, Core ML, TensorRT or torch.export model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofakit.cli.output import ARCH_HELP, bundle_arch
from ofakit.errors import ConfigError
from ofakit.export import FORMATS
from ofakit.io import check_output_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a subnet as a verified ONNX / Core ML / TensorRT / torch.export model",
        description="Extract the subnet ARCH from the bundle's supernet, recalibrate its BN statistics on DATA, "
                    "export it, check it against PyTorch, and write a JSON manifest next to it (OUT.json).")
    p.add_argument("--bundle", help="bundle directory or shipped bundle name (default: the reference bundle)")
    p.add_argument("--arch", required=True, help=ARCH_HELP)
    p.add_argument("--format", required=True,
                   help=f"{', '.join(FORMATS.names())} (torchscript: a torch.export program, .pt2)")
    p.add_argument("--out", type=Path, required=True,
                   help="artifact to write: .onnx, .mlpackage, .engine/.plan or .pt2")
    p.add_argument("--calibrate-bn", metavar="DATA",
                   help="data source (digits, an .npz, an ImageFolder): its train split recalibrates BN "
                        "(recommended) and calibrates int8, its val split checks top-1 agreement")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="default: fp32, or fp16 for coreml; int8 only for tensorrt")
    p.add_argument("--batch", default="1", help="fixed batch size N, or 'dynamic' (default 1)")
    p.add_argument("--force", action="store_true", help="replace an existing artifact")
    p.set_defaults(run=run)


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"--batch must be a positive integer or 'dynamic', got {text!r}")
    return value


def _say(message: str) -> None:
    print(f"ofakit: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ofakit.bundle import calibration_data
    from ofakit.bundles import resolve_bundle
    from ofakit.export import ExportConfig, export_subnet

    fmt = FORMATS.get(args.format)  # an unknown format fails before the arch file is read
    check_output_file(args.out, "the exported model", overwrite=args.force, folder=fmt.name == "coreml")
    cfg = ExportConfig(format=args.format, precision=args.precision, batch=_batch(args.batch), force=args.force)
    bundle = resolve_bundle(args.bundle)
    arch = bundle_arch(args.arch, bundle)
    data = args.calibrate_bn
    if data is None and calibration_data(bundle) is not None:
        data = str(calibration_data(bundle))
        _say(f"recalibrating BN on the bundle's own calibration images ({data}); --calibrate-bn DATA uses yours")
    result = export_subnet(bundle, arch, args.out, cfg, data=data, log=_say)
    _say(f"wrote {result.artifact} and {result.manifest}")
    return 0

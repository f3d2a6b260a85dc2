"""`ofakit arch sample|info|from-ofa`: make, inspect and convert ArchConfig JSON files."""
from __future__ import annotations

import argparse
import random
import sys
import warnings
from pathlib import Path

from ofakit.arch import ArchConfig
from ofakit.cli.output import add_drift_options, print_drift, print_json
from ofakit.errors import ConfigError, OfakitError
from ofakit.io import atomic_write_text, check_output_file, read_json_file
from ofakit.space import get_space


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("arch", help="sample, inspect and convert architectures",
                       description="Sample, inspect and convert ArchConfig JSON.")
    asub = p.add_subparsers(dest="arch_command", metavar="ACTION", required=True)

    s = asub.add_parser("sample", help="print a random architecture of a space as ArchConfig JSON")
    s.add_argument("--space", required=True, help="search space name (see `ofakit spaces`)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--which", choices=("random", "largest", "smallest"), default="random")
    s.add_argument("--info", action="store_true", help="also print MACs and params (to stderr)")
    s.add_argument("--out", type=Path, help="write the JSON to this file instead of stdout")
    s.set_defaults(run=run_sample)

    i = asub.add_parser("info", help="check an ArchConfig JSON file and print its MACs and params")
    i.add_argument("arch", type=Path, help="ArchConfig JSON file ('-' for stdin)")
    i.add_argument("--space", help="also check that the arch belongs to this space")
    i.add_argument("--json", action="store_true", help="print JSON (keys: valid, macs, params, ...)")
    i.add_argument("--device", help="also estimate the latency on this device (see `ofakit devices`)")
    i.add_argument("--latency-model", metavar="MODEL",
                   help="with --device: lut | predictor | auto (default: the learned predictor when one is fitted "
                        "for the device and space, else the LUT sum)")
    add_drift_options(i, "with --device: ")
    i.set_defaults(run=run_info)

    f = asub.add_parser("from-ofa", help="convert MIT once-for-all's net.config of a subnet to ArchConfig JSON")
    f.add_argument("net_config", type=Path, help="MIT net.config JSON (or a JSON with 'net_config', 'image_size')")
    f.add_argument("--space", help="target space (default: guessed from the config's widths)")
    f.add_argument("--resolution", type=int,
                   help="input size (default: 'image_size' in the file, else run.config next to it, else 224)")
    f.add_argument("--out", type=Path, help="write the JSON to this file instead of stdout")
    f.set_defaults(run=run_from_ofa)


def _emit(arch: ArchConfig, out: Path | None) -> None:
    text = arch.to_json(indent=2)
    if out is None:
        print(text)
    else:
        try:
            atomic_write_text(out, text + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
        print(f"wrote {out}", file=sys.stderr)


def run_sample(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_output_file(args.out, "the arch")
    space = get_space(args.space)
    if args.which == "largest":
        arch = space.largest()
    elif args.which == "smallest":
        arch = space.smallest()
    else:
        arch = space.sample(random.Random(args.seed))
    _emit(arch, args.out)
    if args.info:
        print(f"{arch.space}: {space.macs(arch) / 1e6:.1f} M MACs, {space.params(arch) / 1e6:.2f} M params",
              file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace) -> int:
    arch = ArchConfig.load(args.arch)
    space = get_space(args.space or arch.space)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space.validate(arch)
    notes = [str(w.message) for w in caught]
    macs, params = space.macs(arch), space.params(arch)
    for flag, given in (("--latency-model", args.latency_model is not None), ("--drift", args.drift == "on"),
                        ("--no-drift", args.drift == "off")):
        if given and not args.device:
            raise ConfigError(f"{flag} needs --device")
    latency = _latency(arch, args.device, args.latency_model or "auto", args.drift) if args.device else {}
    if args.json:
        print_json({"valid": True, "space": arch.space, "resolution": arch.resolution, "macs": macs,
                    "params": params, **latency, "warnings": notes})
        return 0
    for note in notes:
        print(f"ofakit: warning: {note}", file=sys.stderr)
    print_drift(latency.get("latency_drift"))
    print(f"space       {arch.space}\nresolution  {arch.resolution}\nvalid       yes\n"
          f"MACs        {macs / 1e6:.2f} M ({macs})\nparams      {params / 1e6:.3f} M ({params})")
    if latency:
        drift = f" x drift {latency['latency_drift_scale']:.3f}" if "latency_drift_scale" in latency else ""
        print(f"latency     {latency['latency_ms']:.2f} ms on {latency['device']} ({latency['latency_estimator']}"
              f"{drift}, {latency.get('latency_predictor', latency['latency_table'])})")
    return 0


def _latency(arch: ArchConfig, device: str, model: str, drift: str) -> dict[str, object]:
    """Estimated latency on `device` by its latency model for the arch's space, corrected for this machine's drift
    as `drift` (auto | on | off, `ofakit.latency.drift.drift_for`) says: no network is built unless the drift is
    measured, and then only the first time on a machine (the exported reference model is cached)."""
    from ofakit.latency import get_device
    from ofakit.latency.drift import drift_for
    from ofakit.predict.estimators import estimator_for

    name = get_device(device).name
    est = estimator_for(name, arch.space, model=model)
    correction = drift_for(name, arch.space, mode=drift, table_free=est.table is None)
    scale = correction.scale
    out: dict[str, object] = {"device": name, "latency_ms": round(est.estimate(arch, scale=scale), 4),
                              "latency_estimator": est.name, "latency_table": est.table and str(est.table.path),
                              "latency_drift": correction.to_dict()}
    if scale != 1.0:
        out["latency_drift_scale"] = round(scale, 4)
    if getattr(est, "path", None) is not None:
        out["latency_predictor"] = str(est.path)
    return out


def run_from_ofa(args: argparse.Namespace) -> int:
    from ofakit.interop.ofa_config import arch_from_ofa_config

    if args.out is not None:
        check_output_file(args.out, "the arch")
    if args.space is not None:
        get_space(args.space)  # a misspelt --space is named as such, not as a fault of the file
    data = read_json_file(args.net_config, "a MIT net.config (JSON)")
    if not isinstance(data, dict):
        raise ConfigError(f"{args.net_config}: expected a JSON object")
    config = data.get("net_config", data)
    if not isinstance(config, dict):
        raise ConfigError(f"{args.net_config}: 'net_config' must be a JSON object")
    resolution = args.resolution if args.resolution is not None else data.get("image_size")
    run_config = args.net_config.parent / "run.config"
    if resolution is None and run_config.is_file():
        run_data = read_json_file(run_config, "a MIT run.config (JSON)")
        resolution = run_data.get("image_size") if isinstance(run_data, dict) else None
    if isinstance(resolution, list) and resolution:  # MIT's run.config may list sizes; the last is the test size
        resolution = resolution[-1]
    guessed = resolution is None
    if guessed:
        resolution = 224
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise ConfigError(f"{args.net_config}: image size must be an integer, got {resolution!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arch = arch_from_ofa_config(config, resolution, args.space)
        except OfakitError as exc:
            raise ConfigError(f"{args.net_config}: {exc}") from None
    if guessed:  # only once the config converted, so a mistake in it still gives one line on stderr
        print("ofakit: note: no image size given or found; using 224 (pass --resolution)", file=sys.stderr)
    for w in caught:
        print(f"ofakit: warning: {w.message}", file=sys.stderr)
    _emit(arch, args.out)
    return 0

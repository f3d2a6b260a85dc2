"""`ofakit latency convert-mit|fit|validate|adapt|estimate`: bring MIT's tables in, fit a learned latency predictor,
check estimates against measured latency, make a device from a few measured subnets, estimate a list of archs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofakit.cli.output import add_drift_options
from ofakit.io import check_output_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="convert latency tables, fit a latency predictor, validate estimates",
                       description="Latency tables and estimators.")
    lsub = p.add_subparsers(dest="latency_command", metavar="ACTION", required=True)

    c = lsub.add_parser("convert-mit", help="convert MIT's latency YAML tables (once-for-all, ProxylessNAS)",
                        description="Convert MIT HAN Lab's published latency tables (a folder of "
                                    "<resolution>_lookup_table.yaml files, or one YAML file) into an ofakit table.")
    c.add_argument("source", type=Path, help="folder of <resolution>_lookup_table.yaml files, or one YAML file")
    c.add_argument("--device", required=True, help="device the table was measured on (see `ofakit devices`)")
    c.add_argument("--space", required=True, help="search space of the table (see `ofakit spaces`)")
    c.add_argument("--out", type=Path, help="output JSON (default: latency_tables/<device>_<space>.json)")
    c.add_argument("--attribution", default="", help="who measured and published the table (kept in its metadata)")
    c.add_argument("--license", default="", help="license of the source numbers (kept in its metadata)")
    c.set_defaults(run=run_convert)

    f = lsub.add_parser("fit", help="measure random subnets end to end and fit the learned latency predictor",
                        description="Measure N random subnets end to end on the device (interleaved with the "
                                    "table's reference model, for drift; resumable: records are kept as JSONL) and fit "
                                    "a predictor of their latency from the LUT sum and arch features, stored as JSON "
                                    "next to the table.")
    _measure_arguments(f, samples=40, seed="seeds the subnets, folds and trees")
    f.add_argument("--out", type=Path,
                   help="predictor JSON (default: latency_tables/<device>_<space>.predictor.json)")
    f.add_argument("--uniform", action="store_true",
                   help="also measure every uniform subnet (one kernel, expand and depth everywhere) at 3 of the "
                        "resolutions: the corners of the space, which random subnets never reach")
    f.add_argument("--records", type=Path,
                   help="measured subnets, JSONL, kept to resume and refit (default: next to --out, "
                        "<device>_<space>.predictor.records.jsonl); every record in it is fitted on")
    f.set_defaults(run=run_fit)

    v = lsub.add_parser("validate", help="measure random subnets end to end and score the latency estimators",
                        description="Measure N random subnets end to end on the device (interleaved, two passes for "
                                    "the noise floor) and compare them with the LUT sum, the LUT sum with drift "
                                    "normalization, the learned predictor (when one is fitted; the subnets it was "
                                    "fitted on are skipped) and a FLOPs-linear baseline.")
    _measure_arguments(v, samples=30, seed="seeds the subnets")
    v.add_argument("--latency-model", default="auto", metavar="MODEL",
                   help="lut | predictor | auto: auto (default) adds the learned predictor when one is fitted")
    v.add_argument("--json", action="store_true", help="print JSON (metrics, and every subnet's numbers)")
    v.add_argument("--plot", type=Path, metavar="FILE.png", help="write a predicted-vs-measured plot")
    v.set_defaults(run=run_validate)

    a = lsub.add_parser("adapt", help="a latency model for a device from a few subnets measured on it",
                        description="Fit a latency model for DEVICE from a few subnets measured on it (JSONL records "
                                    "{\"arch\": {...}, \"measured_ms\": N}, as `latency fit` writes or your own "
                                    "stopwatch), over other devices' models of the space. A new name becomes a user "
                                    "device: NAME.yaml and NAME.adapted.json in the first folder of "
                                    "$OFAKIT_DEVICES_PATH (else ~/.config/ofakit/devices), found through "
                                    "$OFAKIT_DEVICES_PATH.")
    a.add_argument("--device", required=True, help="the device's name (new or known)")
    a.add_argument("--space", required=True, help="search space of the measured subnets")
    a.add_argument("--records", type=Path, required=True, help="measured subnets, JSON lines")
    a.add_argument("--from", dest="sources", nargs="+", metavar="DEVICE", default=[],
                   help="source devices (default: every shipped device with a model of the space)")
    a.add_argument("--out", type=Path, help="model file, named DEVICE.adapted.json (default: see above; a known "
                                            "device: next to its device file, or ./latency_tables)")
    a.set_defaults(run=run_adapt)

    e = lsub.add_parser("estimate", help="estimate the latency of a list of archs in one call",
                        description="Estimate every arch of a JSONL file (one ArchConfig object per line, with or "
                                    "without 'space') on DEVICE with its default latency model, in one vectorized "
                                    "call; output in input order.")
    e.add_argument("--device", required=True, help="device name or alias")
    e.add_argument("--space", required=True, help="search space of the archs")
    e.add_argument("--archs", type=Path, required=True, help="JSON lines of ArchConfig objects ('-': stdin)")
    e.add_argument("--latency-model", default="auto", metavar="MODEL",
                   help="which latency model (see `ofakit devices`; default auto)")
    e.add_argument("--json", action="store_true", help='print [{"arch": ..., "latency_ms": ...}]')
    add_drift_options(e)
    e.set_defaults(run=run_estimate)


def _measure_arguments(p: argparse.ArgumentParser, *, samples: int, seed: str) -> None:
    """What `fit` and `validate` share: where and what to measure."""
    p.add_argument("--device", required=True, help="device name or alias (its backend must run here)")
    p.add_argument("--space", required=True, help="search space (the device needs a table for it)")
    p.add_argument("--samples", type=int, default=samples, help="random subnets to measure (default %(default)s)")
    p.add_argument("--resolutions", type=int, nargs="+", metavar="R",
                   help="draw resolutions from these (default: every resolution the table covers)")
    p.add_argument("--seed", type=int, default=0, help=f"{seed} (default %(default)s)")
    p.add_argument("--reps", type=int, default=8, help="timed rounds per pass (default %(default)s)")
    p.add_argument("--calls", type=int, default=3,
                   help="timed calls per subnet and round (default %(default)s; sub-millisecond subnets: raise "
                        "--reps and --calls, e.g. 30 and 5)")


def run_convert(args: argparse.Namespace) -> int:
    from ofakit.latency.devices import get_device
    from ofakit.latency.mit import convert, read_sources
    from ofakit.latency.table import table_filename
    from ofakit.space import get_space

    device = get_device(args.device).name
    space = get_space(args.space).name
    if args.out is not None:
        check_output_file(args.out, "the latency table")
    sources = read_sources(args.source, space)
    table = convert(sources, device=device, space=space, source=f"MIT table {args.source.name}",
                    attribution=args.attribution, license=args.license)
    out = args.out or Path("latency_tables") / table_filename(device, space)
    table.save(out)
    for note in table.meta.get("notes", []):
        print(f"ofakit: note: {note}", file=sys.stderr)
    print(f"wrote {out} ({len(table)} entries at {len(table.entries)} resolution(s))", file=sys.stderr)
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from ofakit.cli.output import print_table
    from ofakit.latency.devices import get_device
    from ofakit.latency.table import find_table
    from ofakit.predict.fit import LatencyFitConfig, fit_latency, latency_fit_paths
    from ofakit.space import get_space

    device = get_device(args.device)
    space = get_space(args.space)
    table = find_table(device.name, space.name)
    cfg = LatencyFitConfig(samples=args.samples, resolutions=tuple(args.resolutions or ()), seed=args.seed,
                           reps=args.reps, calls=args.calls, uniform=args.uniform, out=args.out, records=args.records)
    out, records = latency_fit_paths(device.name, space.name, cfg)
    predictor = fit_latency(device, space, table, cfg, on_group=lambda done, n: print(
        f"ofakit: fit: {done}/{n} subnets measured ({records})", file=sys.stderr))
    rows = [[name + (" (chosen)" if name == predictor.kind else ""), f"{m['within_10pct'] * 100:.0f} %",
             f"{m['mape_pct']:.1f} %", f"{m['spearman']:.3f}"] for name, m in predictor.meta["cv"].items()]
    print_table(f"{device.name} {space.name}: {predictor.meta['records']} subnets, {predictor.meta['folds']}-fold CV",
                ["model", "within ±10 %", "MAPE", "Spearman"], rows)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from ofakit.cli.output import print_json, print_table
    from ofakit.latency.devices import get_device
    from ofakit.predict.estimators import estimator_for
    from ofakit.latency.table import find_table
    from ofakit.latency.measure import check_repetitions
    from ofakit.latency.validate import ValidateConfig, plot, validate
    from ofakit.predict.latency import LatencyPredictor
    from ofakit.space import get_space

    device = get_device(args.device)
    space = get_space(args.space)
    table = find_table(device.name, space.name)
    check_repetitions(reps=args.reps, calls=args.calls)
    if args.plot:  # before measuring: a path in the way, or no matplotlib, is one line now rather than a lost run
        from ofakit.plot import pyplot

        check_output_file(args.plot, "the plot")
        pyplot("--plot")
    estimator = estimator_for(device.name, space.name, model=args.latency_model)
    predictor = estimator if isinstance(estimator, LatencyPredictor) else None
    cfg = ValidateConfig(samples=args.samples, resolutions=tuple(args.resolutions or ()), seed=args.seed,
                         reps=args.reps, calls=args.calls)
    if predictor is not None:
        print(f"ofakit: validate: learned predictor {predictor.path} ({predictor.kind}, fitted on "
              f"{predictor.meta.get('records')} subnets); these subnets are drawn with seed {args.seed} and skip the "
              "ones it was fitted on", file=sys.stderr)
    result = validate(device, space, table, cfg, predictor=predictor, on_group=lambda g, n: print(
        f"ofakit: validate: group {g}/{n} measured", file=sys.stderr))
    metrics = result.metrics()
    if "flops_linear" not in result.estimates:
        print("ofakit: note: the FLOPs-linear baseline needs --samples 3 or more (each subnet predicted by a line "
              "fitted on the others); not reported", file=sys.stderr)
    if args.plot:
        plot(result, str(args.plot), f"{device.name} {space.name}: {len(result.archs)} subnets")
    if args.json:
        print_json({
            "device": device.name, "space": space.name, "table": str(table.path), "samples": len(result.archs),
            "seed": args.seed, "predictor": str(predictor.path) if predictor else None,
            "metrics": metrics, "reference": result.reference,
            "subnets": [{"arch": a.to_dict(), "macs": int(m), "measured_ms": float(t),
                         "passes_ms": [float(result.passes[0][i]), float(result.passes[1][i])],
                         **{f"{k}_ms": float(v[i]) for k, v in result.estimates.items()}}
                        for i, (a, m, t) in enumerate(zip(result.archs, result.macs, result.measured))],
        })
    else:
        rows = [[name, f"{m['within_10pct'] * 100:.0f} %", f"{m['mape_pct']:.1f} %", f"{m['spearman']:.3f}",
                 f"{m['bias_pct']:+.1f} %"] for name, m in metrics.items()]
        print_table(f"{device.name} {space.name}: {len(result.archs)} subnets, measured vs estimated",
                    ["estimator", "within ±10 %", "MAPE", "Spearman", "median bias"], rows)
        if result.reference:
            r = result.reference
            print(f"reference model: {r['now_ms']:.3f} ms now, {r['table_ms']:.3f} ms in the table "
                  f"(drift scale {r['scale']:.3f})")
    if args.plot:
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def run_adapt(args: argparse.Namespace) -> int:
    from ofakit.errors import ConfigError
    from ofakit.latency.devices import DEVICES_PATH_ENV
    from ofakit.latency.measure import read_measured
    from ofakit.predict.adapt import adapt_device
    from ofakit.predict.estimators import estimator_for

    if not args.records.is_file():
        raise ConfigError(f"cannot read measured subnets {str(args.records)!r}: no such file")
    records = read_measured(args.records, space=args.space)
    done = adapt_device(args.device, args.space, records, lambda d, s: estimator_for(d, s, model="auto"),
                        sources=args.sources, out=args.out)
    m = done.model.meta
    cv = m["cv"]
    print(f"{m['device']} {m['space']}: {m['records']} subnets over {', '.join(s['device'] for s in m['sources'])}; "
          f"{m['kind']}; cross-validated {cv['within_10pct'] * 100:.0f} % within ±10 %, MAPE {cv['mape_pct']:.1f} %, "
          f"Spearman {cv['spearman']:.3f}")
    print(f"wrote {done.path}" + (f" and {done.device_file}" if done.device_file else ""), file=sys.stderr)
    if done.device_file:
        print(f"ofakit finds the device with {DEVICES_PATH_ENV} including {done.device_file.parent}", file=sys.stderr)
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    from ofakit.cli.output import print_drift, print_json
    from ofakit.latency.drift import drift_for
    from ofakit.predict.batch import estimate_archs, read_arch_lines
    from ofakit.predict.estimators import estimator_for

    archs = read_arch_lines(args.archs, args.space)
    est = estimator_for(args.device, args.space, model=args.latency_model)
    drift = drift_for(args.device, args.space, mode=args.drift, table_free=est.table is None)
    print_drift(drift.to_dict())
    rows = estimate_archs(est, archs, scale=drift.scale)
    print(f"ofakit: {len(rows)} archs estimated with the {est.name} latency model of {args.device}", file=sys.stderr)
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            a = row["arch"]
            print(f"{row['latency_ms']:10.3f} ms  r{a['resolution']} d{''.join(map(str, a['depths']))}")
    return 0

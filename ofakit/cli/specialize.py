"""`ofakit specialize --device D --latency 30ms [...]`: the most accurate subnet of a bundle under the limits."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofakit.cli.output import print_json, print_table
from ofakit.errors import ConfigError
from ofakit.io import atomic_write_json, atomic_write_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("specialize", help="find the best subnet for a device under latency/MACs/params limits",
                       description="Search a bundle's supernet for the subnet with the best predicted accuracy "
                                   "under the limits (latency from the device's table).")
    p.add_argument("--device", required=True, help="device name or alias (see `ofakit devices`)")
    p.add_argument("--latency", help="latency limit: 30ms, 30 (ms) or 0.03s")
    p.add_argument("--macs", help="MACs limit: 300M, 1.2G")
    p.add_argument("--params", help="parameter limit: 5M")
    p.add_argument("--bundle", help="bundle directory (with a fitted or imported predictor) or shipped bundle name "
                                    "(default: the reference bundle, see `ofakit bundle list`)")
    p.add_argument("--latency-model", default="auto", metavar="MODEL",
                   help="lut | predictor | auto: auto (default) uses the learned latency predictor when one is fitted "
                        "for the device and space (ofakit latency fit), else the LUT sum")
    p.add_argument("--algorithm", default="evolution", help="evolution | aging | coarse-to-fine | random")
    p.add_argument("--budget", type=int, default=5000, help="archs to score (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="directory for arch.json and report.json (and pareto.png)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--pareto", action="store_true", help="also compute the accuracy/latency front (needs --out "
                                                          "for the PNG)")
    p.add_argument("--verify", metavar="DATA", help="recalibrate BN and measure the chosen subnet's real accuracy")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.search.constraints import parse_count, parse_latency_ms
    from ofakit.search.specialize import SpecializeConfig, pareto_report, specialize

    from ofakit.bundles import resolve_bundle

    args.bundle = resolve_bundle(args.bundle)
    if args.budget < 1:
        raise ConfigError(f"--budget must be positive, got {args.budget}")
    cfg = SpecializeConfig(
        device=args.device,
        latency_ms=parse_latency_ms(args.latency) if args.latency is not None else None,
        macs=parse_count(args.macs, "MACs") if args.macs is not None else None,
        params=parse_count(args.params, "parameter count") if args.params is not None else None,
        algorithm=args.algorithm, budget=args.budget, seed=args.seed, latency_model=args.latency_model,
    )
    result, report = specialize(args.bundle, cfg)
    if args.pareto:
        from ofakit.latency.estimate import estimator_for

        est = estimator_for(report["device"], report["space"], model=report["latency_estimator"])
        report["pareto"] = pareto_report(result, est.estimate_rows)
    if args.verify:
        report["verify"] = _verify(args.bundle, result.best, args.verify)
    if args.out is not None:
        import json

        atomic_write_text(args.out / "arch.json", json.dumps(report["arch"], indent=2) + "\n")
        atomic_write_json(args.out / "report.json", report)
        if args.pareto:
            from ofakit.search.pareto import plot_fronts

            front = report["pareto"]
            plot_fronts(args.out / "pareto.png",
                        {"specialized (predicted)": (front["latency_ms"],
                                                     [100 * a for a in front["predicted_accuracy"]])},
                        xlabel=f"estimated latency on {report['device']} (ms)", ylabel="predicted top-1 (%)",
                        title=f"{report['space']} on {report['device']}")
    if args.json:
        print_json(report)
        return 0
    rows = [["predicted top-1", f"{100 * report['predicted_accuracy']:.2f} %"],
            ["latency", f"{report['latency_ms']:.2f} ms ({report['latency_estimator']}, {report['device']})"],
            ["MACs", f"{report['macs'] / 1e6:.1f} M"], ["params", f"{report['params'] / 1e6:.2f} M"],
            ["resolution", str(report["arch"]["resolution"])], ["depths", str(report["arch"]["depths"])],
            ["searched", f"{report['evaluations']} archs in {report['wall_time_s']:.2f} s ({report['algorithm']})"]]
    if "verify" in report:
        rows.append(["measured top-1", f"{100 * report['verify']['top1']:.2f} % on {report['verify']['data']}"])
    print_table(f"specialized {report['space']} for {report['device']}", ["", "value"], rows)
    if args.out is not None:
        print(f"wrote {args.out / 'arch.json'} and {args.out / 'report.json'}", file=sys.stderr)
    return 0


def _verify(bundle: Path, arch, data: str) -> dict:  # noqa: ANN001
    from ofakit.bundle import load_bundle
    from ofakit.train.data import load_dataset
    from ofakit.train.evaluate import EvalConfig, evaluate_subnet

    supernet, _ = load_bundle(bundle)
    top1 = evaluate_subnet(supernet, arch, load_dataset(data, "train"), load_dataset(data, "val"), EvalConfig())
    return {"top1": round(top1, 4), "data": data}

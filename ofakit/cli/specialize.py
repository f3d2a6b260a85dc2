"""`ofakit specialize --device D --latency 30ms [...]`: the most accurate subnet of a bundle under the limits."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofakit.cli.output import add_drift_options, print_drift, print_json, print_table
from ofakit.io import check_output_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ofakit.search.algorithms import ALGORITHMS  # NumPy only: the names without torch

    p = sub.add_parser("specialize", help="find the best subnet for a device under latency/MACs/params limits",
                       description="Search a bundle's supernet for the subnet with the best predicted accuracy "
                                   "under the limits (latency from the device's table).")
    p.add_argument("--device", required=True, help="device name or alias (see `ofakit devices`)")
    p.add_argument("--latency", help="latency limit: 30ms, 30 (ms) or 0.03s; several budgets, one subnet each: "
                                     "20ms,25ms,30ms or 20ms:40ms:5 (5 evenly spaced)")
    p.add_argument("--macs", help="MACs limit: 300M, 1.2G")
    p.add_argument("--params", help="parameter limit: 5M")
    p.add_argument("--bundle", help="bundle directory (with a fitted or imported predictor) or shipped bundle name "
                                    "(default: the reference bundle, see `ofakit bundle list`)")
    p.add_argument("--latency-model", default="auto", metavar="MODEL",
                   help="lut | predictor | auto: auto (default) uses the learned latency predictor when one is fitted "
                        "for the device and space (ofakit latency fit), else the LUT sum")
    add_drift_options(p)
    p.add_argument("--algorithm", default="evolution", metavar="NAME",
                   help=f"search algorithm: {' | '.join(ALGORITHMS.names())} (default %(default)s)")
    p.add_argument("--reward", choices=("hard", "mnas"), default="hard",
                   help="rl only: hard (an infeasible subnet earns the floor; default) or mnas (MnasNet's soft "
                        "reward accuracy x (latency / limit) ^ w); the pick always meets the limits")
    p.add_argument("--mnas-w", type=float, default=-0.07, metavar="W", help="w of --reward mnas (default -0.07)")
    p.add_argument("--budget", type=int, help="archs to score (default 5000; 300 with --score supernet); "
                                              "--algorithm gradient: descent steps (default 400)")
    p.add_argument("--score", choices=("predictor", "supernet"), default="auto",
                   help="how subnets are scored: predictor (the bundle's; the default where it has one) or supernet "
                        "(each subnet's real top-1 on images of --data's train split, BN recalibrated: slow, "
                        "no predictor needed)")
    p.add_argument("--data", metavar="DATA", help="images for --score supernet and --algorithm gradient (their "
                   "train split: e.g. the bundle's calibration.npz, or what --verify takes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="directory for arch.json (several budgets: arch-<budget>.json each) and "
                                            "report.json (and pareto.png); an earlier run's arch files and "
                                            "pareto.png that this run does not write are removed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--pareto", action="store_true", help="also compute the accuracy/latency front (needs --out "
                                                          "for the PNG)")
    p.add_argument("--verify", metavar="DATA", help="recalibrate BN and measure the chosen subnet's real accuracy "
                   "on DATA, and its latency end to end where the device runs here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.bundles import resolve_bundle
    from ofakit.search.budgets import arch_files, parse_latency_budgets
    from ofakit.search.constraints import parse_count
    from ofakit.search.specialize import SpecializeConfig, specialize, write_results

    budgets = parse_latency_budgets(args.latency) if args.latency is not None else ()
    if args.out is not None:  # before the search: a file in the way is one line, not an error after it
        archs = arch_files(budgets) if len(budgets) > 1 else ["arch.json"]
        check_output_dir(args.out, "specialize's results", files=(*archs, "report.json", "pareto.png"))
    bundle = resolve_bundle(args.bundle)
    cfg = SpecializeConfig(
        device=args.device,
        latency_ms=budgets[0] if len(budgets) == 1 else None,
        latency_budgets=budgets if len(budgets) > 1 else (),
        macs=parse_count(args.macs, "MACs") if args.macs is not None else None,
        params=parse_count(args.params, "parameter count") if args.params is not None else None,
        algorithm=args.algorithm, budget=args.budget, seed=args.seed, latency_model=args.latency_model,
        drift=args.drift, reward=args.reward, mnas_w=args.mnas_w, score=args.score, data=args.data, progress=True,
    )
    _, report = specialize(bundle, cfg, pareto=args.pareto, verify=args.verify)
    if args.out is not None:
        _, stale = write_results(args.out, report)
        if stale:
            print(f"removed {', '.join(p.name for p in stale)} of an earlier run from {args.out} (this run did not "
                  "write them)", file=sys.stderr)
    for note in report.get("notes", ()):
        print(f"note: {note}", file=sys.stderr)
    print_drift(report.get("latency_drift"))
    if args.json:
        print_json(report)
        return 0
    if "budgets" in report:
        return _print_budgets(report, args.out)
    scale = report.get("latency_drift_scale", 1.0)
    what = "predicted top-1" if report["score"]["kind"] == "predictor" else \
        f"top-1 on {report['score']['images']} train images"
    rows = [[what, f"{100 * report['predicted_accuracy']:.2f} %"],
            ["latency", f"{report['latency_ms']:.2f} ms ({report['latency_estimator']}"
                        + (f" x drift {scale:.3f}" if scale != 1.0 else "") + f", {report['device']})"],
            ["MACs", f"{report['macs'] / 1e6:.1f} M"], ["params", f"{report['params'] / 1e6:.2f} M"],
            ["resolution", str(report["arch"]["resolution"])], ["depths", str(report["arch"]["depths"])],
            ["searched", f"{report['evaluations']} archs in {report['wall_time_s']:.2f} s ({report['algorithm']})"]]
    if "verify" in report:
        v = report["verify"]
        rows.append(["measured top-1", f"{100 * v['top1']:.2f} % on {v['data']}"])
        if "measured_latency_ms" in v:
            rows.append(["measured latency", f"{v['measured_latency_ms']:.2f} ms end to end on {report['device']}"])
        else:
            rows.append(["measured latency", "not measured: " + v["latency_not_measured"]])
    print_table(f"specialized {report['space']} for {report['device']}", ["", "value"], rows)
    if args.out is not None:
        print(f"wrote {args.out / 'arch.json'} and {args.out / 'report.json'}", file=sys.stderr)
    return 0


def _print_budgets(report: dict, out: Path | None) -> int:
    """One row per latency budget."""
    rows = [[f"{e['latency_budget_ms']:g} ms", f"{100 * e['predicted_accuracy']:.2f} %", f"{e['latency_ms']:.2f} ms",
             f"{e['macs'] / 1e6:.1f} M", f"{e['params'] / 1e6:.2f} M", str(e["arch"]["resolution"])]
            for e in report["budgets"]]
    print_table(f"specialized {report['space']} for {report['device']} ({report['latency_estimator']}; "
                f"{report['evaluations']} archs in {report['wall_time_s']:.2f} s, {report['algorithm']})",
                ["budget", "predicted top-1", "latency", "MACs", "params", "resolution"], rows)
    if out is not None:
        print(f"wrote {len(report['budgets'])} arch-<budget>.json and report.json in {out}", file=sys.stderr)
    return 0

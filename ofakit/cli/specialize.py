"""`ofakit specialize --device D --latency 30ms [...]`: the most accurate subnet of a bundle under the limits."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofakit.cli.output import print_json, print_table
from ofakit.errors import ConfigError
from ofakit.io import atomic_write_json, atomic_write_text, check_output_dir


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
    p.add_argument("--drift", action="store_true",
                   help="measure the table's reference model on the device now and scale every latency estimate by "
                        "(now / when the table was made), so a machine running slower or faster today is followed "
                        "(the device's runtime must run here; imports torch)")
    p.add_argument("--algorithm", default="evolution", help="evolution | aging | coarse-to-fine | random")
    p.add_argument("--budget", type=int, default=5000, help="archs to score (default 5000)")
    p.add_argument("--engine", default="numpy", choices=("numpy", "numba"),
                   help="numba: run evolution's breeding compiled (same result; pays off for large --budget: "
                        "loading it costs ~0.5 s; pip install 'ofakit[fast]')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="directory for arch.json and report.json (and pareto.png)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--pareto", action="store_true", help="also compute the accuracy/latency front (needs --out "
                                                          "for the PNG)")
    p.add_argument("--verify", metavar="DATA", help="recalibrate BN and measure the chosen subnet's real accuracy "
                   "on DATA, and its latency end to end where the device runs here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.search.constraints import parse_count, parse_latency_ms
    from ofakit.search.specialize import SpecializeConfig, pareto_report, specialize

    from ofakit.bundles import resolve_bundle

    if args.out is not None:  # before the search: a file in the way is one line, not an error after it
        check_output_dir(args.out, "specialize's results", files=("arch.json", "report.json", "pareto.png"))
    args.bundle = resolve_bundle(args.bundle)
    if args.budget < 1:
        raise ConfigError(f"--budget must be positive, got {args.budget}")
    scale = 1.0
    if args.drift:
        from ofakit.bundle import read_bundle_info
        from ofakit.latency.profile import drift_scale

        scale = drift_scale(args.device, read_bundle_info(args.bundle).space)
    cfg = SpecializeConfig(
        device=args.device,
        latency_ms=parse_latency_ms(args.latency) if args.latency is not None else None,
        macs=parse_count(args.macs, "MACs") if args.macs is not None else None,
        params=parse_count(args.params, "parameter count") if args.params is not None else None,
        algorithm=args.algorithm, budget=args.budget, seed=args.seed, latency_model=args.latency_model,
        latency_scale=scale, engine=args.engine,
    )
    result, report = specialize(args.bundle, cfg)
    if args.pareto:
        from ofakit.predict.estimators import estimator_for

        est = estimator_for(report["device"], report["space"], model=report["latency_estimator"])
        report["pareto"] = pareto_report(result, lambda genome, rows: est.estimate_rows(genome, rows, scale=scale))
    if args.verify:
        report["verify"] = _verify(args.bundle, result.best, args.verify, report)
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
            ["latency", f"{report['latency_ms']:.2f} ms ({report['latency_estimator']}"
                        + (f" x drift {scale:.3f}" if args.drift else "") + f", {report['device']})"],
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


def _verify(bundle: Path, arch, data: str, report: dict) -> dict:  # noqa: ANN001
    """Real top-1 after BN recalibration, and the subnet's end-to-end latency where the device runs here."""
    from ofakit.bundle import load_bundle
    from ofakit.errors import BackendUnavailableError
    from ofakit.train.data import load_dataset
    from ofakit.train.evaluate import EvalConfig, evaluate_subnet

    supernet, _ = load_bundle(bundle)
    top1 = evaluate_subnet(supernet, arch, load_dataset(data, "train"), load_dataset(data, "val"), EvalConfig())
    out = {"top1": round(top1, 4), "predicted_top1": report["predicted_accuracy"], "data": data}
    try:
        out.update(_measure_latency(arch, report))
    except BackendUnavailableError as exc:
        out["latency_not_measured"] = str(exc)
    return out


def _measure_latency(arch, report: dict) -> dict:  # noqa: ANN001
    """Measure `arch` end to end on the report's device (two interleaved passes with the table's reference model)
    and compare with the estimate, also scaled by the reference's drift since the table was made."""
    from ofakit.latency.devices import get_device
    from ofakit.latency.table import find_table
    from ofakit.latency.measure import ValidateConfig, measure_groups
    from ofakit.space import get_space

    table = find_table(report["device"], report["space"])
    group = next(measure_groups(get_device(report["device"]), get_space(report["space"]), table, [arch],
                                ValidateConfig(group=1)))
    estimate = report["latency_ms"] / report.get("latency_drift_scale", 1.0)  # at the table's level
    out = {"measured_latency_ms": round(group.measured[0], 4), "estimated_latency_ms": round(estimate, 4)}
    if group.reference_level is not None and table.reference_ms:
        scale = group.reference_level / table.reference_ms
        out["drift_scale"] = round(scale, 4)
        out["estimated_latency_ms_drift_normalized"] = round(estimate * scale, 4)
    return out

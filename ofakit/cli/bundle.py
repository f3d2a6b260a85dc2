"""`ofakit bundle info [BUNDLE] [--check] [--json]`: what a bundle holds, and whether its weights fit its space;
`ofakit bundle list`: the bundles that ship with ofakit."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from ofakit.bundle import read_bundle_info
from ofakit.cli.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="inspect a bundle", description="Inspect a bundle directory.")
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    i = bsub.add_parser("info", help="print a bundle's metadata; --check also loads and checks every tensor")
    i.add_argument("bundle", nargs="?", help="bundle directory or shipped bundle name (default: the reference bundle)")
    i.add_argument("--check", action="store_true", help="load the weights and check every key and shape")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(run=run_info)
    ls = bsub.add_parser("list", help="the bundles that ship with ofakit")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(run=run_list)


def run_list(args: argparse.Namespace) -> int:
    from ofakit.bundles import REFERENCE, shipped_bundles

    rows = []
    for name, path in shipped_bundles().items():
        info = read_bundle_info(path)
        top1 = info.metrics.get("test_top1", {})
        rows.append({"name": name, "reference": name == REFERENCE, "space": info.space, "dataset": info.dataset,
                     "largest_top1": top1.get("largest"), "smallest_top1": top1.get("smallest"), "path": str(path)})
    if args.json:
        print_json(rows)
        return 0
    from ofakit.cli.output import print_table

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    print_table("shipped bundles", ["name", "space", "dataset", "top-1 largest", "top-1 smallest"],
                [[r["name"] + (" (default)" if r["reference"] else ""), r["space"], r["dataset"],
                  pct(r["largest_top1"]), pct(r["smallest_top1"])] for r in rows])
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ofakit.bundles import resolve_bundle

    bundle = resolve_bundle(args.bundle)
    info = read_bundle_info(bundle)
    data = asdict(info)
    if args.check:
        from ofakit.bundle import load_bundle

        supernet, _ = load_bundle(bundle)
        data["checked"] = True
        data["parameters"] = sum(p.numel() for p in supernet.parameters())
    if args.json:
        print_json(data)
        return 0
    for key, value in summary(data):
        print(f"{key:15s} {value}")
    command = " ".join(["ofakit bundle info"] + ([str(args.bundle)] if args.bundle else []) + ["--json"])
    print(f"{'':15s} (every field: {command})")
    return 0


def _pct(value: object) -> str | None:
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) and 0 <= value <= 1 else None


def _top1(metrics: dict) -> str | None:
    """Largest and smallest subnets' top-1: the test-set figures when the bundle has them, else the training run's
    own (a few validation batches), else any top-level fraction."""
    test = metrics.get("test_top1")
    if isinstance(test, dict) and any(_pct(v) for v in test.values()):
        where = f" ({metrics['test_set']})" if isinstance(metrics.get("test_set"), str) else ""
        return ", ".join(f"{k} {_pct(v)}" for k, v in test.items() if _pct(v)) + where
    parts = [f"{name} {_pct(metrics[name].get('top1'))}" for name in ("largest", "smallest")
             if isinstance(metrics.get(name), dict) and _pct(metrics[name].get("top1"))]
    if parts:
        return ", ".join(parts) + " (the training run's validation batches)"
    parts = [f"{k} {_pct(v)}" for k, v in metrics.items() if _pct(v)]
    return ", ".join(parts) or None


def _training(training: dict) -> list[tuple[str, str]]:
    rows = []
    chain = training.get("chain")
    chain = [run for run in chain if isinstance(run, dict)] if isinstance(chain, list) else []
    what = [f"a chain of {len(chain)} runs" if len(chain) > 1
            else training.get("recipe") if isinstance(training.get("recipe"), str) else None]
    if isinstance(training.get("steps"), int):
        what.append(f"{training['steps']:,} steps")
    minutes = training.get("train_minutes")
    if not isinstance(minutes, (int, float)) and isinstance(training.get("train_seconds"), (int, float)):
        minutes = training["train_seconds"] / 60
    machine = training.get("machine") if isinstance(training.get("machine"), dict) else {}
    if isinstance(minutes, (int, float)):
        on = f" on {machine['cpu']}" if isinstance(machine.get("cpu"), str) else ""
        cores = f" ({machine['cores']} cores)" if isinstance(machine.get("cores"), int) else ""
        what.append(f"{minutes:,.0f} min{on}{cores}")
    if isinstance(training.get("from_bundle"), str):
        what.append(f"from {training['from_bundle']}")
    if any(what):
        rows.append(("training", ", ".join(w for w in what if w)))
    if len(chain) > 1:
        for i, run in enumerate(chain):
            stages = run.get("stages") if isinstance(run.get("stages"), list) else []
            minutes = run.get("train_minutes")
            settings = run.get("set") if isinstance(run.get("set"), dict) else {}
            beyond = f" with {', '.join(f'{k}={v}' for k, v in settings.items())}" if settings else ""
            rows.append(("  run " + str(i + 1), f"{run.get('recipe')}{beyond}: {', '.join(map(str, stages))}"
                         + (f", {run['steps']:,} steps" if isinstance(run.get("steps"), int) else "")
                         + (f", {minutes:,.0f} min" if isinstance(minutes, (int, float)) else "")))
            teachers = run.get("teachers") if isinstance(run.get("teachers"), list) else []
            for teacher in (t for t in teachers if isinstance(t, dict)):
                rows.append(("    teacher", _teacher(teacher)))
    return rows


def _teacher(teacher: dict) -> str:
    """One teacher bundle of a run, as package.py records it: path, top-1, date and weights' digest."""
    parts = [f"largest {_pct(teacher.get('largest_test_top1'))}" if _pct(teacher.get("largest_test_top1")) else None,
             f"made {teacher['created'][:10]}" if isinstance(teacher.get("created"), str) else None,
             f"weights sha256 {teacher['weights_sha256']}" if isinstance(teacher.get("weights_sha256"), str) else None]
    detail = ", ".join(p for p in parts if p)
    return f"{teacher.get('bundle')}" + (f" ({detail})" if detail else "")


def summary(data: dict) -> list[tuple[str, str]]:
    """The lines a person reads first; `--json` has everything."""
    rows = [("space", f"{data['space']} ({data['num_classes']} classes)")]
    if data.get("dataset"):
        rows.append(("dataset", str(data["dataset"])))
    weights = [str(data.get("weights_dtype", ""))]
    if "parameters" in data:
        weights.append(f"{data['parameters'] / 1e6:.2f} M parameters")
    if data.get("checked"):
        weights.append("every key and shape checked")
    rows.append(("weights", ", ".join(w for w in weights if w)))
    metrics = data.get("metrics") or {}
    top1 = _top1(metrics)
    if top1:
        rows.append(("top-1", top1))
    rows += _training(data.get("training") or {})
    predictor = metrics.get("predictor")
    if isinstance(predictor, dict):
        held = predictor.get("heldout") if isinstance(predictor.get("heldout"), dict) else {}
        line = f"{predictor.get('kind', '?')}, fitted on {predictor.get('samples', '?')} subnets"
        if isinstance(held.get("kendall_tau"), (int, float)):
            line += f"; held out: Kendall tau {held['kendall_tau']:.3f}"
        rows.append(("predictor", line))
    made = " ".join(x for x in (str(data.get("created") or ""), f"ofakit {data['ofakit_version']}"
                                if data.get("ofakit_version") else "") if x)
    if made:
        rows.append(("made", f"{made} (format {data.get('format')})"))
    return rows

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
    for key, value in data.items():
        if value not in ({}, ""):
            print(f"{key:15s} {value}")
    return 0

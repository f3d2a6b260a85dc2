"""`ofakit bundle info BUNDLE [--check] [--json]`: what a bundle holds, and whether its weights fit its space."""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ofakit.bundle import read_bundle_info
from ofakit.cli.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="inspect a bundle", description="Inspect a bundle directory.")
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    i = bsub.add_parser("info", help="print a bundle's metadata; --check also loads and checks every tensor")
    i.add_argument("bundle", type=Path, help="bundle directory")
    i.add_argument("--check", action="store_true", help="load the weights and check every key and shape")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    info = read_bundle_info(args.bundle)
    data = asdict(info)
    if args.check:
        from ofakit.bundle import load_bundle

        supernet, _ = load_bundle(args.bundle)
        data["checked"] = True
        data["parameters"] = sum(p.numel() for p in supernet.parameters())
    if args.json:
        print_json(data)
        return 0
    for key, value in data.items():
        if value not in ({}, ""):
            print(f"{key:15s} {value}")
    return 0

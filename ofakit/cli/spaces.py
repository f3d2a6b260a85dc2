"""`ofakit spaces [--json]`: the registered search spaces, their choices and sizes."""
from __future__ import annotations

import argparse

from ofakit.cli.output import print_json, print_table
from ofakit.space import SPACES, get_space


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the search spaces", description="List the registered search spaces.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    summaries = [get_space(name).summary() for name in SPACES.names()]
    if args.json:
        print_json(summaries)
        return 0
    rows = []
    for s in summaries:
        c = s["choices"]
        res = c["resolution"]
        rows.append([
            s["name"], s["family"],
            f"{res[0]}-{res[-1]}" if len(res) > 1 else str(res[0]),
            ",".join(map(str, c.get("kernel_size", []))) or "-",
            ",".join(map(str, c["expand_ratio"])),
            ",".join(map(str, c["depth"])),
            ",".join(map(str, c.get("width_mult", []))) or "-",
            f"{s['num_architectures']:.2e}",
        ])
    print_table("ofakit search spaces", ["space", "family", "resolution", "kernel", "expand", "depth", "width",
                                         "architectures"], rows)
    return 0

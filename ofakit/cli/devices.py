"""`ofakit devices [--json]`: the registered devices, their backends and the latency tables found for them."""
from __future__ import annotations

import argparse

from ofakit.cli.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the devices and their latency tables",
                       description="List the devices (devices/*.yaml and $OFAKIT_DEVICES_PATH) and the latency "
                                   "tables found for each.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.latency.devices import devices
    from ofakit.latency.table import available_tables

    registry = devices()
    records = []
    for name in registry.names():
        spec = registry.get(name)
        tables = available_tables(name)
        records.append({**spec.to_dict(), "tables": {space: str(path) for space, path in sorted(tables.items())}})
    if args.json:
        print_json(records)
        return 0
    rows = []
    for r in records:
        b = r["backend"]
        settings = [b["precision"], f"batch {b['batch']}"]
        if b["threads"]:
            settings.insert(0, f"{b['threads']} thread{'s' if b['threads'] > 1 else ''}")
        if b["compute_units"]:
            settings.append(b["compute_units"])
        target = r["reach"]["host"] or r["reach"]["serial"]
        reach = r["reach"]["via"] + (f" {target}" if target else "")
        rows.append([r["name"], ", ".join(r["aliases"]) or "-", r["kind"], b["name"], ", ".join(settings), reach,
                     ", ".join(r["tables"]) or "-"])
    print_table("ofakit devices", ["device", "aliases", "kind", "backend", "settings", "reach", "tables"], rows)
    return 0

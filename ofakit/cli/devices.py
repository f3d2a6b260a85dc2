"""`ofakit devices [--json]`: the registered devices, their backends, and how each one's latency is estimated (tables,
learned, op, calibrated, structural and adapted models), with where the numbers come from and their held-out error. A
model file that cannot be read is listed as unreadable, with a warning on stderr that names it and says why."""
from __future__ import annotations

import argparse
import sys

from ofakit.cli.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the devices and how their latency is estimated",
                       description="List the devices (devices/*.yaml and $OFAKIT_DEVICES_PATH), the latency tables "
                                   "found for each, and every latency model behind them: what it is, for which "
                                   "spaces, where its numbers come from and its error on data it was not fitted on.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.latency.devices import devices
    from ofakit.latency.table import available_tables
    from ofakit.predict.provenance import UNREADABLE, device_models, error_summary

    registry = devices()
    records = []
    for name in registry.names():
        spec = registry.get(name)
        tables = available_tables(name)
        records.append({**spec.to_dict(), "tables": {space: str(path) for space, path in sorted(tables.items())},
                        "latency_models": device_models(name)})
    for r in records:  # a broken model file is named, and the listing goes on
        for m in r["latency_models"]:
            if m["kind"] == UNREADABLE:
                print(f"ofakit: warning: device {r['name']!r}: {m['error']}", file=sys.stderr)
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
    models = [[r["name"], m["kind"], ", ".join(m["spaces"]), _fitted_on(m), error_summary(m), m.get("file") or "-"]
              for r in records for m in r["latency_models"]]
    models += [[r["name"], "nothing measured yet", "-", "-", "-",
                f"ofakit profile --device {r['name']} --space SPACE, or ofakit latency adapt --device {r['name']} "
                "--space SPACE --records MEASURED.jsonl"] for r in records if not r["latency_models"]]
    print_table("how latency is estimated (ofakit devices --json: sources and attribution)",
                ["device", "model", "spaces", "fitted on", "held-out error", "file"], models)
    return 0


def _fitted_on(model: dict) -> str:
    if model.get("records"):
        return f"{model['records']} measured subnets"
    if model.get("nets"):
        return f"{model['nets']} published nets"
    return "its table" if "table" in model else "-"

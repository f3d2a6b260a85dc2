"""Small helpers the commands share: JSON to stdout, tables through rich, the drift options and their report, and
the `--arch` of a bundle's subnet."""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ofakit.arch import ArchConfig

NAMED_ARCHS = ("largest", "smallest")
ARCH_HELP = "ArchConfig JSON of the subnet (a network of the bundle's space), or largest / smallest: its extremes"


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console(file=sys.stdout, width=160).print(table)


def add_drift_options(parser: Any, prefix: str = "") -> None:
    """--drift / --no-drift (dest `drift`: auto | on | off), as `ofakit.latency.drift.drift_for` takes them."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--drift", dest="drift", action="store_const", const="on", default="auto",
                       help=f"{prefix}always measure the table's reference model on the device now and scale the "
                            "estimates by (now / in the table); an error where it cannot be measured. Default: done "
                            "for devices that run here and tables with a reference (about a second)")
    group.add_argument("--no-drift", dest="drift", action="store_const", const="off",
                       help=f"{prefix}use the table's numbers as they are (deterministic: no timing here)")


def print_drift(drift: Mapping[str, Any] | None) -> None:
    """The drift correction's one line (and its re-profile hint) on stderr."""
    if drift:
        print(f"latency: {drift['why']}", file=sys.stderr)
        if drift.get("hint"):
            print(f"note: {drift['hint']}", file=sys.stderr)


def bundle_arch(value: str, bundle: str | Path) -> ArchConfig:
    """`--arch`: an ArchConfig JSON file ('-': stdin), or `largest` / `smallest` of the bundle's space (the name wins
    over a file so named; write ./largest for that file). No torch."""
    from ofakit.arch import ArchConfig

    if value in NAMED_ARCHS:
        from ofakit.bundle import read_bundle_info
        from ofakit.space import get_space

        space = get_space(read_bundle_info(bundle).space)
        return space.largest() if value == "largest" else space.smallest()
    return ArchConfig.load(value)

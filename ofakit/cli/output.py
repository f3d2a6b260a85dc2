"""Small helpers for what commands print: JSON to stdout, tables through rich."""
from __future__ import annotations

import json
import sys
from typing import Any


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

"""A progress bar on stderr for searches whose steps are slow (subnets scored with the supernet, gradient steps on
it), so that `--json` output on stdout stays clean. Drawn only on a terminal; elsewhere it does nothing."""
from __future__ import annotations

import sys
from typing import Any


class SearchProgress:
    """`advance` after each unit of work; `note` sets the text after the bar (e.g. the best score so far).

    Args:
        total: expected units (a bar that overruns it just stays full).
        description: what is counted, e.g. "scoring subnets".
        enabled: draw it at all (and only when stderr is a terminal).
    """

    def __init__(self, total: int, description: str, *, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task(description, total=total, note="")
        self.bar.start()

    def advance(self, units: int = 1, **fields: Any) -> None:
        if self.enabled:
            self.bar.update(self.task, advance=units, **fields)

    def note(self, text: str) -> None:
        if self.enabled:
            self.bar.update(self.task, note=text)

    def describe(self, description: str, *, total: int | None = None, completed: int | None = None) -> None:
        if self.enabled:
            self.bar.update(self.task, description=description, total=total, completed=completed)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
            self.enabled = False

"""A clean stop on Ctrl-C or SIGTERM: the step under way ends, a checkpoint of it is written, then the run stops.

Without it, a run stopped by Ctrl-C, `kill` or a `timeout` wrapper (a batch scheduler's time limit, a lent GPU's
call limit) resumes from its last periodic checkpoint and trains up to `checkpoint_every` steps again. With it, the
first SIGINT or SIGTERM is noted and the loop stops after the step under way, at a checkpoint; a second one acts at
once, as it would have without this (KeyboardInterrupt, or the termination the earlier handler gives). Single-process
runs only: under torchrun every process would have to agree on the step to stop at, and torchrun stops them all.
Where no handler can be set (a thread other than the main one), nothing changes.
"""
from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = ("SIGINT", "SIGTERM")


class StopRequest:
    """Notes the first SIGINT or SIGTERM between `start()` and `close()`; `name` is its name, or None."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.previous: dict[int, Any] = {}  # signal number -> the handler before ours

    def start(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self.previous[number] = signal.signal(number, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.name is None:
            self.name = signal.Signals(signum).name
            return
        self.close()  # a second request: act as the earlier handler would
        signal.raise_signal(signum)

    def close(self) -> None:
        """Put the earlier handlers back."""
        for number, handler in self.previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

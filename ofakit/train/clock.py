"""The training time a run reports: wall time less the time its process stood stopped.

A process stopped with SIGSTOP or Ctrl-Z (SIGTSTP) and continued later (SIGCONT: `fg`, `kill -CONT`, a scheduler that
pauses jobs) keeps counting on the monotonic clock, so a run paused for an hour would report an hour of training it
never did. The clock learns of a stop from the SIGCONT that ends it and, at the end of that step, counts the step as
long as a typical step (the median of the last ones) instead of its wall time. Where no SIGCONT handler can be set
(a thread other than the main one, or a platform without the signal), the clock is plain wall time.
"""
from __future__ import annotations

import signal
import statistics
import threading
import time
from collections import deque
from typing import Any


class RunClock:
    """Seconds of training since `start()`, stopped time left out; `tick()` after each step."""

    def __init__(self, window: int = 21) -> None:
        self.started = self.last = time.perf_counter()
        self.stopped = 0.0  # seconds left out so far
        self.recent: deque[float] = deque(maxlen=window)  # the last steps that held no stop
        self.continued = False  # a SIGCONT came since the last tick
        self.previous: Any = None  # the SIGCONT handler before ours, put back by close()
        self.installed = False

    def start(self) -> RunClock:
        """Reset the clock and listen for SIGCONT (main thread only); returns self."""
        self.started = self.last = time.perf_counter()
        if hasattr(signal, "SIGCONT") and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGCONT, self._on_continue)
            self.installed = True
        return self

    def _on_continue(self, signum: int, frame: Any) -> None:
        self.continued = True
        if callable(self.previous):
            self.previous(signum, frame)

    def tick(self) -> None:
        """End of a step: a step that held a stop counts as a typical step."""
        now = time.perf_counter()
        took, self.last = now - self.last, now
        if self.continued:
            self.continued = False
            typical = statistics.median(self.recent) if self.recent else 0.0
            self.stopped += max(0.0, took - typical)
        else:
            self.recent.append(took)

    def elapsed(self) -> float:
        """Seconds since start(), less the stopped time counted so far."""
        return time.perf_counter() - self.started - self.stopped

    def close(self) -> None:
        """Put the earlier SIGCONT handler back."""
        if self.installed:
            signal.signal(signal.SIGCONT, self.previous if self.previous is not None else signal.SIG_DFL)
            self.installed = False

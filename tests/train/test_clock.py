"""The training clock leaves out the time a process stood stopped (SIGSTOP, then SIGCONT), counts every other step's
wall time, and puts the earlier SIGCONT handler back."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from ofakit.train.clock import RunClock

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="no SIGSTOP/SIGCONT on this platform")


def stop_for(seconds: float) -> None:
    """Stop this process; a child continues it after `seconds`."""
    subprocess.Popen(["sh", "-c", f"sleep {seconds}; kill -CONT {os.getpid()}"])
    os.kill(os.getpid(), signal.SIGSTOP)


def test_a_stop_is_left_out_and_the_steps_are_counted():
    before = signal.getsignal(signal.SIGCONT)
    clock = RunClock().start()
    try:
        for _ in range(5):
            time.sleep(0.02)
            clock.tick()
        stop_for(1.0)
        time.sleep(0.02)
        clock.tick()  # the step that held the stop counts as a typical one
        time.sleep(0.02)
        clock.tick()
        wall = time.perf_counter() - clock.started
    finally:
        clock.close()
    assert wall > 1.0
    assert 0.13 <= clock.elapsed() < 0.5  # seven steps of ~0.02 s, not the second of the stop
    assert 0.8 < clock.stopped < wall
    assert signal.getsignal(signal.SIGCONT) == before


def test_without_a_stop_the_clock_is_wall_time():
    clock = RunClock().start()
    for _ in range(3):
        time.sleep(0.05)
        clock.tick()
    clock.close()
    assert clock.stopped == 0 and clock.elapsed() == pytest.approx(time.perf_counter() - clock.started, abs=0.01)

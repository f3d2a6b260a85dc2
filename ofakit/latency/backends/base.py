"""What every latency backend provides: load a model onto the device, then time calls of it.

A backend is built from a `DeviceSpec` (its backend settings say threads, precision, batch, providers) and imports
its runtime inside its methods, so `import ofakit.latency.backends` needs neither torch nor any runtime. `load`
returns a `Runner`; `measure` times a runner with warm-up and repetitions and reports the median and the spread.
Runners stay loaded, so that a profile can time the reference model in the same rounds as its layers and
`ofakit latency validate` can interleave its subnets.
"""
from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ofakit.errors import BackendUnavailableError
from ofakit.latency.devices import DeviceSpec

if TYPE_CHECKING:
    from torch import nn


class Runner(ABC):
    """A model loaded on the device, ready to run on a fixed input."""

    @abstractmethod
    def time(self, n: int) -> list[float]:
        """Run `n` times; milliseconds of each call."""


@dataclass(frozen=True)
class Timing:
    """Milliseconds over `count` timed calls."""

    median: float
    mean: float
    std: float
    p10: float
    p90: float
    count: int

    @classmethod
    def of(cls, times: list[float]) -> Timing:
        ordered = sorted(times)
        n = len(ordered)
        return cls(median=statistics.median(ordered), mean=statistics.fmean(ordered),
                   std=statistics.pstdev(ordered) if n > 1 else 0.0, p10=ordered[int(0.1 * (n - 1))],
                   p90=ordered[int(round(0.9 * (n - 1)))], count=n)


class Backend(ABC):
    """Times models on one device through one runtime.

    Args:
        device: the device; its `backend` settings configure the runtime.
    """

    name: str
    precisions: tuple[str, ...] = ("fp32",)

    def __init__(self, device: DeviceSpec) -> None:
        self.device = device
        self.settings = device.backend
        if self.settings.precision not in self.precisions:
            raise BackendUnavailableError(
                f"device {device.name!r} asks for precision {self.settings.precision!r}; the {self.name} backend "
                f"supports {', '.join(self.precisions)} (edit the device file or pick another device)")

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this backend cannot run here (missing runtime, GPU or OS), or None when it can."""
        return None

    @abstractmethod
    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        """Put `model` (eval mode, on CPU) on the device with a random input of `input_shape`."""

    @abstractmethod
    def environment(self) -> dict[str, Any]:
        """Runtime name and version, threads, host model: recorded in every table the backend fills."""


def measure(runner: Runner, *, warmup: int = 10, reps: int = 50) -> Timing:
    """Run `warmup` untimed calls, then time `reps` calls."""
    if warmup:
        runner.time(warmup)
    return Timing.of(runner.time(reps))


def require(module: str, install: str, what: str) -> Any:
    """Import a runtime or raise BackendUnavailableError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(f"the {what} backend needs {module!r}, which is not installed here "
                                      f"({exc}); install it with: {install}") from None


def missing_module(module: str) -> str | None:
    """None when `module` can be imported, else why not (for `Backend.unavailable`)."""
    import importlib.util

    return None if importlib.util.find_spec(module) is not None else f"python package {module!r} is not installed"


def host_cpu() -> str:
    """The CPU model name (Linux /proc/cpuinfo, else platform.processor())."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed_calls(call: Callable[[], Any], n: int) -> list[float]:
    """Milliseconds of `n` calls of a synchronous function, by the wall clock."""
    import time

    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)
    return out

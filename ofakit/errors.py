"""Errors a user can cause. The CLI prints any `OfakitError` as one line on stderr and exits with code 2."""
from __future__ import annotations


class OfakitError(Exception):
    """Base class of every error caused by user input (bad names, values, files)."""


class UnknownNameError(OfakitError, LookupError):
    """A name that is not in a registry (space, device, backend, format)."""

    def __str__(self) -> str:  # LookupError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


class ArchError(OfakitError, ValueError):
    """An architecture that is not legal in its search space, or malformed ArchConfig data."""


class ConfigError(OfakitError, ValueError):
    """A malformed configuration or input file (bad JSON, unknown keys, wrong types)."""


class CapabilityError(OfakitError, ValueError):
    """A space (or device) that lacks what a command needs, e.g. layer-by-layer profiling of a ResNet space; the
    message names the space and the capability."""


class BundleError(OfakitError, ValueError):
    """A bundle or checkpoint that does not fit the space it claims, or that is not in a safe format."""


class LatencyLookupError(OfakitError, LookupError):
    """A layer or table that a latency estimate needs but that no table holds; the message names the profile command."""

    def __str__(self) -> str:  # as UnknownNameError: the message, not its repr()
        return str(self.args[0]) if self.args else ""


class BackendUnavailableError(OfakitError, RuntimeError):
    """A latency backend whose runtime (TensorRT, coremltools, a CUDA GPU, macOS) is not available here."""


class BenchOutputError(OfakitError, ValueError):
    """The output of a benchmark tool run on a remote device that does not hold the timings ofakit reads from it."""

"""Latency backends: `BACKENDS` maps a runtime name to the `Backend` class that times models with it here;
`RemoteBackend` times them on an ssh host or adb phone with a benchmark tool there.

Each backend imports its runtime inside its methods, so importing this package needs neither torch nor a runtime;
a missing runtime is a `BackendUnavailableError` that says how to install it.
"""
from __future__ import annotations

from ofakit.errors import BackendUnavailableError
from ofakit.latency.backends.base import Backend, Runner, Timing, measure
from ofakit.latency.backends.coreml import CoreMLBackend
from ofakit.latency.backends.onnxruntime import OnnxRuntimeBackend
from ofakit.latency.backends.remote import RemoteBackend
from ofakit.latency.backends.tensorrt import TensorRTBackend
from ofakit.latency.backends.torch import TorchBackend
from ofakit.latency.devices import DeviceSpec
from ofakit.registry import Registry

BACKENDS: Registry[type[Backend]] = Registry("backend")
BACKENDS.add("onnxruntime", OnnxRuntimeBackend, aliases=("ort",))
BACKENDS.add("torch", TorchBackend, aliases=("pytorch",))
BACKENDS.add("tensorrt", TensorRTBackend, aliases=("trt",))
BACKENDS.add("coreml", CoreMLBackend)


def backend_for(device: DeviceSpec) -> Backend:
    """The backend that times models on `device`: a local one, or the remote runner for ssh/adb devices whose file
    names a benchmark tool or a python; raises for table-only devices."""
    remote = device.reach.via != "local"
    if remote and (device.reach.benchmark or device.reach.python):
        return RemoteBackend(device)
    if device.backend.name not in BACKENDS:
        raise BackendUnavailableError(
            f"device {device.name!r} uses backend {device.backend.name!r}, which ofakit cannot run (its tables come "
            f"from elsewhere); backends ofakit runs: {', '.join(BACKENDS.names())}")
    if remote:
        raise BackendUnavailableError(
            f"device {device.name!r} is reached over {device.reach.via}, but {device.source} names no tool to time "
            "models there: set reach.benchmark (onnxruntime_perf_test or benchmark_model on the target) or "
            "reach.python (a python with onnxruntime on the target, which runs ofakit's timer)")
    return BACKENDS.get(device.backend.name)(device)


__all__ = ["BACKENDS", "Backend", "BackendUnavailableError", "RemoteBackend", "Runner", "Timing", "backend_for",
           "measure"]

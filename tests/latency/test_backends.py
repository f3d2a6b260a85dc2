"""Backends: the registry, lazy imports, timing on this CPU, and clear errors where a runtime or GPU is missing."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ofakit.errors import BackendUnavailableError, UnknownNameError
from ofakit.latency.backends import BACKENDS, Runner, Timing, backend_for, measure
from ofakit.latency.devices import BackendSettings, get_device
from ofakit.space import get_space

ROOT = Path(__file__).resolve().parents[2]


def test_registry_names_and_aliases():
    assert BACKENDS.names() == ["coreml", "onnxruntime", "tensorrt", "torch"]
    assert BACKENDS.canonical("trt") == "tensorrt" and BACKENDS.canonical("ort") == "onnxruntime"
    with pytest.raises(UnknownNameError, match=r"unknown backend 'tensorrtt'; known: .*Did you mean 'tensorrt'\?"):
        BACKENDS.get("tensorrtt")


def test_importing_backends_needs_no_runtime():
    script = ("import sys; import ofakit.latency.backends, ofakit.latency.profile; "
              "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'coremltools') if m in sys.modules]; "
              "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _layers():
    sp = get_space("tiny")
    return sp.layers(sp.largest())


def _on_the_cpu(device: str):
    """The device, a GPU one turned into a one-thread CPU device; skips where its runtime is missing."""
    spec = get_device(device)
    if spec.kind == "gpu":
        spec = replace(spec, kind="cpu", backend=replace(spec.backend, threads=1))
    pytest.importorskip("onnxruntime" if spec.backend.name == "onnxruntime" else "torch")
    return spec


@pytest.mark.parametrize("device", ["cpu-ort", "h100-torch"])
def test_cpu_timing_of_every_layer_op(device):
    """onnxruntime and torch (on the CPU: h100-torch as a cpu device) time every layer kind of the tiny space."""
    spec = _on_the_cpu(device)
    from ofakit.latency.build import input_shape, layer_module

    backend = backend_for(spec)
    for layer in _layers():
        t = measure(backend.load(layer_module(layer), input_shape(layer)), warmup=1, reps=3)
        assert isinstance(t, Timing) and t.count == 3 and t.p10 > 0
    env = backend.environment()
    assert env["runtime_version"] and env["host"] and env["threads"] == 1


def test_torch_backend_records_the_devices_threads():
    """The environment a table keeps (and a resumed profile compares) holds the threads the device asks for, which
    `load` sets, not the count torch happens to have before any load."""
    pytest.importorskip("torch")
    from ofakit.latency.backends.torch import TorchBackend

    base = _on_the_cpu("h100-torch")
    for threads in (2, 3):
        device = replace(base, backend=replace(base.backend, threads=threads))
        assert TorchBackend(device).environment()["threads"] == threads


def test_timing_statistics_of_known_times():
    """Ten calls of 1..10 ms in any order and one stall of 100 ms: the median and percentiles ignore the stall."""
    t = Timing.of([5.0, 1.0, 9.0, 3.0, 100.0, 7.0, 2.0, 10.0, 4.0, 8.0, 6.0])
    assert (t.count, t.median, t.p10, t.p90) == (11, 6.0, 2.0, 10.0)
    assert t.mean == pytest.approx(155 / 11)  # the stall does move the mean and the spread:
    assert t.std == pytest.approx(((385 + 100**2) / 11 - (155 / 11) ** 2) ** 0.5)  # population std, 27.3 ms
    assert Timing.of([2.0, 1.0]) == Timing(median=1.5, mean=1.5, std=0.5, p10=1.0, p90=2.0, count=2)
    assert Timing.of([3.0]) == Timing(median=3.0, mean=3.0, std=0.0, p10=3.0, p90=3.0, count=1)


class _ScriptedRunner(Runner):
    """Returns the given times call after call, and records how many runs each call asked for."""

    def __init__(self, *calls: list[float]) -> None:
        self.calls, self.asked = list(calls), []

    def time(self, n: int) -> list[float]:
        self.asked.append(n)
        return self.calls.pop(0)[:n]


def test_measure_leaves_the_warm_up_out():
    runner = _ScriptedRunner([500.0] * 3, [4.0, 2.0, 3.0, 1.0, 5.0])
    assert measure(runner, warmup=3, reps=5) == Timing.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert runner.asked == [3, 5]
    runner = _ScriptedRunner([4.0, 2.0])
    assert measure(runner, warmup=0, reps=2).median == 3.0 and runner.asked == [2]


def _conv_stack(n: int, channels: int):
    from torch import nn

    return nn.Sequential(*[nn.Conv2d(channels, channels, 3, padding=1) for _ in range(n)])


def _cost_ratio(backend, *, n: int, channels: int, size: int, reps: int) -> float:
    """Median time of `n` stacked 3x3 convolutions over that of one: how much more work the timer sees."""
    shape = (1, channels, size, size)
    one = measure(backend.load(_conv_stack(1, channels), shape), warmup=2, reps=reps)
    many = measure(backend.load(_conv_stack(n, channels), shape), warmup=2, reps=reps)
    assert one.count == many.count == reps and one.p10 > 0
    return many.median / one.median


@pytest.mark.parametrize("device", ["cpu-ort", "h100-torch"])
def test_cpu_timing_follows_the_work(device):
    """Sixteen convolutions take several times as long as one (not the same time, not noise)."""
    spec = _on_the_cpu(device)
    assert _cost_ratio(backend_for(spec), n=16, channels=16, size=32, reps=10) > 4


def test_onnxruntime_session_uses_the_device_threads():
    pytest.importorskip("onnxruntime")
    from ofakit.latency.backends.onnxruntime import to_onnx
    from ofakit.latency.build import input_shape, layer_module

    layer = _layers()[2]
    backend = backend_for(get_device("cpu-ort"))
    session = backend.session(to_onnx(layer_module(layer), input_shape(layer)))
    assert session.get_session_options().intra_op_num_threads == 1


def test_missing_onnxruntime_provider_is_named():
    spec = get_device("cpu-ort")
    spec = replace(spec, backend=replace(spec.backend, providers=("NoSuchExecutionProvider",)))
    with pytest.raises(BackendUnavailableError, match=r"provider\(s\) NoSuchExecutionProvider; this onnxruntime "):
        backend_for(spec).environment()


def test_unsupported_precision_is_named():
    spec = get_device("cpu-ort")
    spec = replace(spec, backend=BackendSettings("onnxruntime", threads=1, precision="int8"))
    with pytest.raises(BackendUnavailableError, match=r"precision 'int8'; the onnxruntime backend supports fp32"):
        backend_for(spec)


def test_table_only_devices_are_refused():
    with pytest.raises(BackendUnavailableError, match=r"device 'note10' uses backend 'tflite', which ofakit cannot"):
        backend_for(get_device("note10"))


def test_torch_gpu_device_without_cuda_is_a_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the error path does not apply")
    from torch import nn

    with pytest.raises(BackendUnavailableError, match=r"device 'h100-torch' is a GPU device, but torch .* sees no "
                                                      r"CUDA GPU here"):
        backend_for(get_device("h100-torch")).load(nn.Identity(), (1, 3, 8, 8))


@pytest.mark.cuda
def test_torch_cuda_timing():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    assert _cost_ratio(backend_for(get_device("h100-torch")), n=16, channels=64, size=56, reps=20) > 3


@pytest.mark.tensorrt
def test_tensorrt_engine_timing():
    from ofakit.latency.backends.tensorrt import TensorRTBackend

    reason = TensorRTBackend.unavailable()
    if reason:
        pytest.skip(f"TensorRT backend unavailable: {reason}")
    assert _cost_ratio(backend_for(get_device("h100-tensorrt")), n=16, channels=64, size=56, reps=20) > 2


def test_tensorrt_missing_is_a_clear_error():
    from ofakit.latency.backends.tensorrt import TensorRTBackend

    if TensorRTBackend.unavailable() is None:
        pytest.skip("TensorRT is installed and a GPU is present")
    from torch import nn

    with pytest.raises(BackendUnavailableError, match=r"tensorrt"):
        backend_for(get_device("h100-tensorrt")).load(nn.Identity(), (1, 3, 8, 8))


@pytest.mark.coreml_predict
def test_coreml_timing():
    from ofakit.latency.backends.coreml import CoreMLBackend

    reason = CoreMLBackend.unavailable()
    if reason:
        pytest.skip(f"Core ML backend unavailable: {reason}")
    assert _cost_ratio(backend_for(get_device("iphone-coreml")), n=16, channels=64, size=56, reps=20) > 2


def test_coreml_timing_off_macos_is_a_clear_error():
    if sys.platform == "darwin":
        pytest.skip("on macOS Core ML timing is available")
    from torch import nn

    with pytest.raises(BackendUnavailableError, match=r"device 'iphone-coreml': Core ML timing needs macOS"):
        backend_for(get_device("iphone-coreml")).load(nn.Identity(), (1, 3, 8, 8))

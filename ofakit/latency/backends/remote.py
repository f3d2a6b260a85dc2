"""Remote runners: time models on an ssh host or an adb phone with a benchmark tool that runs there.

`load` exports the model here (ONNX through the ONNX Runtime backend's exporter; TFLite through ai-edge-torch for
`benchmark_model`), copies it once into a work folder on the target, and returns a `RemoteRunner`; each `time(n)`
is one run of the tool on the target, whose output `ofakit.latency.backends.bench_output` reads. The tool is named
by the device file:

- `reach.benchmark`: a command on the target whose program is `onnxruntime_perf_test` (onnxruntime devices) or
  TFLite's `benchmark_model` (tflite devices), possibly after a prefix such as `taskset 01`;
- `reach.python`: a python with numpy and onnxruntime on the target, which runs ofakit's own timer (`ort_timer.py`,
  copied next to the models) and reports every call.

Every tool run loads the model afresh and warms it up before timing (`WARMUP_CALLS` calls; onnxruntime_perf_test
makes its own single warm-up call), so a `measure` warm-up costs one extra run and its timings are discarded as
usual. The work folder (`reach.workdir`, by default /tmp over ssh and /data/local/tmp over adb) holds one
`ofakit-<random>` folder per backend: a runner's model is removed when the runner is garbage-collected, the folder
when the backend is (or when Python exits).
"""
from __future__ import annotations

import shlex
import tempfile
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ofakit.errors import BackendUnavailableError, BenchOutputError
from ofakit.latency.backends import ort_timer
from ofakit.latency.backends.base import Backend, Runner, require
from ofakit.latency.backends.bench_output import (
    BenchReport, parse_ofakit_timer, parse_onnxruntime_perf_test, parse_tflite_benchmark,
)
from ofakit.latency.backends.transport import COPY_TIMEOUT_S, transport_for
from ofakit.latency.devices import BackendSettings, DeviceSpec
from ofakit.registry import Registry

if TYPE_CHECKING:
    from torch import nn

WARMUP_CALLS = 3  # untimed calls in each tool run, before the timed ones
RUN_TIMEOUT_S = 600  # one tool run on the target
PROBE_TIMEOUT_S = 60  # reading the target's name or runtime version

# ONNX Runtime execution provider -> onnxruntime_perf_test's `-e` name
PERF_TEST_PROVIDERS = {
    "CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt",
    "NnapiExecutionProvider": "nnapi", "XnnpackExecutionProvider": "xnnpack", "QNNExecutionProvider": "qnn",
    "CoreMLExecutionProvider": "coreml", "OpenVINOExecutionProvider": "openvino", "DmlExecutionProvider": "dml",
}


@dataclass(frozen=True)
class BenchTool:
    """A benchmark program on the target: what model it reads, how it is called, how its output is read."""

    name: str  # the program's name (a device's benchmark command is matched on it)
    backend: str  # the device backend whose models it runs
    suffix: str  # model file suffix: .onnx or .tflite
    command: Callable[[list[str], str, int, BackendSettings], list[str]]  # (prefix, model, n, settings) -> argv
    parse: Callable[[str], BenchReport]


def _perf_test_command(prefix: list[str], model: str, n: int, s: BackendSettings) -> list[str]:
    provider = s.providers[0] if s.providers else "CPUExecutionProvider"
    threads = ["-x", str(s.threads)] if s.threads else []
    return [*prefix, "-m", "times", "-r", str(n), "-e", PERF_TEST_PROVIDERS[provider], *threads, "-I", model]


def _benchmark_model_command(prefix: list[str], model: str, n: int, s: BackendSettings) -> list[str]:
    threads = [f"--num_threads={s.threads}"] if s.threads else []
    return [*prefix, f"--graph={model}", f"--num_runs={n}", "--min_secs=0", f"--warmup_runs={WARMUP_CALLS}",
            "--warmup_min_secs=0", *threads]


def _timer_command(prefix: list[str], model: str, n: int, s: BackendSettings) -> list[str]:
    return [*prefix, model, "--runs", str(n), "--warmup", str(WARMUP_CALLS), "--threads", str(s.threads),
            "--providers", *(s.providers or ("CPUExecutionProvider",))]


TOOLS: Registry[BenchTool] = Registry("benchmark tool")
TOOLS.add("onnxruntime_perf_test", BenchTool("onnxruntime_perf_test", "onnxruntime", ".onnx", _perf_test_command,
                                             parse_onnxruntime_perf_test))
TOOLS.add("benchmark_model", BenchTool("benchmark_model", "tflite", ".tflite", _benchmark_model_command,
                                       parse_tflite_benchmark))
TIMER = BenchTool("ofakit ort_timer.py", "onnxruntime", ".onnx", _timer_command, parse_ofakit_timer)
TIMER_FILE = "ort_timer.py"


def tool_for(device: DeviceSpec) -> tuple[BenchTool, list[str]]:
    """The device's benchmark tool and the argv prefix that starts it (for the timer: python and the script)."""
    reach = device.reach
    if reach.python:
        return TIMER, shlex.split(reach.python)
    prefix = shlex.split(reach.benchmark)
    for word in prefix:
        program = PurePosixPath(word).name
        for name in TOOLS.names():
            if program.endswith(name):
                return TOOLS.get(name), prefix
    raise BackendUnavailableError(
        f"device {device.name!r}: reach.benchmark {reach.benchmark!r} names no tool ofakit reads; known: "
        f"{', '.join(TOOLS.names())} (or set reach.python to a python with onnxruntime on the target, which runs "
        f"ofakit's timer)")


def export_model(model: nn.Module, input_shape: tuple[int, ...], suffix: str, path: Path) -> None:
    """Write `model` to `path` as ONNX (.onnx) or TFLite (.tflite, needs ai-edge-torch)."""
    if suffix == ".onnx":
        from ofakit.latency.backends.onnxruntime import to_onnx

        path.write_bytes(to_onnx(model, input_shape))
        return
    edge = require("ai_edge_torch", "pip install ai-edge-torch", "TFLite benchmark_model")
    import torch

    edge.convert(model.eval(), (torch.randn(input_shape),)).export(str(path))


class RemoteBackend(Backend):
    """Times models on an ssh or adb target with the tool its device file names (see the module docstring)."""

    name = "remote"

    def __init__(self, device: DeviceSpec) -> None:
        self.tool, self.prefix = tool_for(device)
        if self.tool.backend != device.backend.name:
            raise BackendUnavailableError(
                f"device {device.name!r} runs backend {device.backend.name!r}, but its benchmark "
                f"{self.tool.name} runs {self.tool.backend} models; fix backend.name or "
                f"{'reach.python' if self.tool is TIMER else 'reach.benchmark'} in {device.source}")
        unknown = [p for p in device.backend.providers[:1] if p not in PERF_TEST_PROVIDERS]
        if self.tool.name == "onnxruntime_perf_test" and unknown:
            raise BackendUnavailableError(
                f"device {device.name!r}: onnxruntime_perf_test has no `-e` name for provider {unknown[0]!r}; "
                f"known: {', '.join(PERF_TEST_PROVIDERS)}")
        super().__init__(device)
        self.transport = transport_for(device)
        self._folder = ""
        self._models = 0
        self.runtime_version = ""

    def folder(self) -> str:
        """This backend's work folder on the target, made (with the timer script, if used) on first call."""
        if not self._folder:
            folder = f"{self.transport.workdir.rstrip('/')}/ofakit-{uuid.uuid4().hex[:12]}"
            self.transport.run(["mkdir", "-p", folder], timeout=COPY_TIMEOUT_S, what="making a work folder")
            weakref.finalize(self, self.transport.remove, folder)
            self._folder = folder
            if self.tool is TIMER:
                self.transport.push(Path(ort_timer.__file__), f"{folder}/{TIMER_FILE}")
        return self._folder

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        folder = self.folder()
        self._models += 1
        remote = f"{folder}/model{self._models}{self.tool.suffix}"
        with tempfile.TemporaryDirectory(prefix="ofakit-remote-") as tmp:
            local = Path(tmp) / f"model{self.tool.suffix}"
            export_model(model.eval(), input_shape, self.tool.suffix, local)
            self.transport.push(local, remote)
        return RemoteRunner(self, remote)

    def command(self, model: str, n: int) -> list[str]:
        """The argv that times `n` calls of the model at `model` on the target."""
        prefix = [*self.prefix, f"{self.folder()}/{TIMER_FILE}"] if self.tool is TIMER else self.prefix
        return self.tool.command(prefix, model, n, self.settings)

    def environment(self) -> dict[str, Any]:
        """Also checks that the target answers (and, for the timer, that its python has onnxruntime)."""
        t = self.transport
        probe = ["getprop", "ro.product.model"] if t.client == "adb" else ["uname", "-nm"]
        host = t.run(probe, timeout=PROBE_TIMEOUT_S, what="reading the target's name").strip().splitlines()
        if self.tool is TIMER and not self.runtime_version:
            out = t.run([*self.prefix, "-c", "import onnxruntime; print(onnxruntime.__version__)"],
                        timeout=PROBE_TIMEOUT_S, what="reading the target's onnxruntime version")
            self.runtime_version = out.strip().splitlines()[0] if out.strip() else ""
        return {"runtime": self.settings.name, "runtime_version": self.runtime_version or None,
                "tool": self.tool.name, "benchmark": self.device.reach.benchmark or self.device.reach.python,
                "reach": t.where, "providers": list(self.settings.providers), "threads": self.settings.threads,
                "host": host[0] if host else t.where}


class RemoteRunner(Runner):
    """A model copied to the target; `time(n)` runs the benchmark tool there once.

    Per-call milliseconds come straight from ofakit's timer. onnxruntime_perf_test and benchmark_model print only
    aggregates: the runner returns `BenchReport.samples(n)`, `n` values spread over the percentiles the tool
    reported (min, median, P90 ... max), or `n` copies of the mean when it reported no percentile.
    """

    def __init__(self, backend: RemoteBackend, path: str) -> None:
        self.backend = backend
        self.path = path
        weakref.finalize(self, backend.transport.remove, path)

    def time(self, n: int) -> list[float]:
        b = self.backend
        argv = b.command(self.path, n)
        out = b.transport.run(argv, timeout=RUN_TIMEOUT_S, what=f"running {b.tool.name}")
        try:
            report = b.tool.parse(out)
        except BenchOutputError as exc:
            raise BenchOutputError(f"device {b.device.name!r} ({b.transport.where}), command "
                                   f"{shlex.join(argv)!r}: {exc}") from None
        if report.runtime_version:
            b.runtime_version = report.runtime_version
        return report.samples(n)

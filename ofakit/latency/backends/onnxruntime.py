"""ONNX Runtime backend: the model exported to ONNX in memory, one InferenceSession per model with the device's
threads and execution providers (CPU here; CUDA and TensorRT execution providers where installed)."""
from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any

from ofakit.errors import BackendUnavailableError
from ofakit.latency.backends.base import Backend, Runner, host_cpu, missing_module, require, timed_calls
from ofakit.latency.backends.ort_timer import bind_io, session_options

if TYPE_CHECKING:
    from torch import nn

OPSET = 17


def to_onnx(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """ONNX bytes of an eval-mode model (TorchScript exporter: fast and stable for these plain layers)."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(input_shape),), buf, input_names=["x"], output_names=["y"],
                          opset_version=OPSET, dynamo=False)
    return buf.getvalue()


class _SessionRunner(Runner):
    """Runs through an IO binding: the input is bound once and outputs stay in ONNX Runtime's memory, so a call
    costs what the graph costs plus the runtime's fixed per-call work (no copy of the output into NumPy, which
    would charge every standalone layer for a copy that a whole network makes once)."""

    def __init__(self, session: Any, x: Any) -> None:
        self.session = session
        self.binding = bind_io(session, x)

    def time(self, n: int) -> list[float]:
        run, binding = self.session.run_with_iobinding, self.binding
        return timed_calls(lambda: run(binding), n)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    @classmethod
    def unavailable(cls) -> str | None:
        return missing_module("onnxruntime")

    def _providers(self) -> list[str]:
        ort = require("onnxruntime", "pip install onnxruntime", self.name)
        wanted = list(self.settings.providers) or ["CPUExecutionProvider"]
        have = ort.get_available_providers()
        missing = [p for p in wanted if p not in have]
        if missing:
            raise BackendUnavailableError(
                f"device {self.device.name!r} asks for ONNX Runtime provider(s) {', '.join(missing)}; this "
                f"onnxruntime {ort.__version__} has: {', '.join(have)}")
        return wanted

    def session(self, onnx_bytes: bytes) -> Any:
        ort = require("onnxruntime", "pip install onnxruntime", self.name)
        opts = session_options(ort, self.settings.threads)
        return ort.InferenceSession(onnx_bytes, opts, providers=self._providers())

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        return self.load_onnx(to_onnx(model, input_shape), input_shape)

    def load_onnx(self, onnx_bytes: bytes, input_shape: tuple[int, ...]) -> Runner:
        """A runner of an exported model (no torch needed)."""
        import numpy as np

        session = self.session(onnx_bytes)
        x = np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
        return _SessionRunner(session, x)

    def environment(self) -> dict[str, Any]:
        ort = require("onnxruntime", "pip install onnxruntime", self.name)
        return {"runtime": "onnxruntime", "runtime_version": ort.__version__, "providers": self._providers(),
                "threads": self.settings.threads, "host": host_cpu()}

"""TensorRT backend: an engine built from ONNX with the TensorRT Python builder (fp32, fp16, or int8 with a
calibration-free dynamic range is not offered: int8 needs a calibrator), timed with CUDA events on a torch stream.

Written against TensorRT 10's documented Python API (`trt.Builder`, `OnnxParser`, `build_serialized_network`,
`IExecutionContext.set_tensor_address` / `execute_async_v3`). TensorRT cannot be installed on the development
machines, so this backend is exercised only where it is installed; its tests skip with the reason elsewhere.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ofakit.errors import BackendUnavailableError
from ofakit.latency.backends.base import Backend, Runner, host_cpu, missing_module, require

if TYPE_CHECKING:
    from torch import nn

INSTALL = "pip install tensorrt (on a machine with an NVIDIA GPU and driver)"


class _EngineRunner(Runner):
    def __init__(self, context: Any, buffers: list[Any], stream: Any) -> None:
        self.context, self.buffers, self.stream = context, buffers, stream  # buffers keep the tensors alive

    def time(self, n: int) -> list[float]:
        import torch

        out = []
        with torch.cuda.stream(self.stream):
            for _ in range(n):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                self.stream.synchronize()
                start.record(self.stream)
                self.context.execute_async_v3(self.stream.cuda_stream)
                end.record(self.stream)
                end.synchronize()
                out.append(start.elapsed_time(end))
        return out


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16")

    @classmethod
    def unavailable(cls) -> str | None:
        reason = missing_module("tensorrt") or missing_module("torch")
        if reason:
            return reason
        import torch

        return None if torch.cuda.is_available() else "no CUDA GPU visible to torch"

    def _trt(self) -> Any:
        trt = require("tensorrt", INSTALL, self.name)
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"the tensorrt backend needs a CUDA GPU; torch {torch.__version__} sees "
                                          "none here")
        return trt

    def build_engine(self, onnx_bytes: bytes) -> bytes:
        """A serialized engine for the ONNX model at the device's precision."""
        trt = self._trt()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailableError(f"TensorRT could not parse the ONNX model: {errors}")
        config = builder.create_builder_config()
        if self.settings.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise BackendUnavailableError("TensorRT failed to build an engine (see its log above)")
        return bytes(engine)

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        import torch

        from ofakit.latency.backends.onnxruntime import to_onnx

        trt = self._trt()
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            self.build_engine(to_onnx(model, input_shape)))
        context = engine.create_execution_context()
        buffers = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
            buf = torch.randn(shape, device="cuda").to(dtype)
            context.set_tensor_address(name, buf.data_ptr())
            buffers.append(buf)
        return _EngineRunner(context, buffers, torch.cuda.Stream())

    def environment(self) -> dict[str, Any]:
        trt = self._trt()
        import torch

        return {"runtime": "tensorrt", "runtime_version": trt.__version__, "gpu": torch.cuda.get_device_name(),
                "precision": self.settings.precision, "host": host_cpu()}

"""TensorRT export: an engine built from the subnet's ONNX with TensorRT's Python builder, run on the GPU.

fp32, fp16 (`BuilderFlag.FP16`) and int8 (`BuilderFlag.INT8` with an entropy calibrator fed real training images;
fp16 is allowed too, for layers TensorRT keeps out of int8). Written against TensorRT 10's Python API: TensorRT 11
removed the FP16/INT8 builder flags and the calibrators in favour of explicit quantization. An engine runs only on the
GPU model and TensorRT version that built it.

Untested on the machines this was written on (no TensorRT libraries can be installed there).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.export.formats import (
    FORMATS, INPUT_NAME, OUTPUT_NAME, ArtifactSpec, ExportError, ExportFormat, Loaded, MissingRuntimeError,
)
from ofakit.export.onnx import export_onnx

if TYPE_CHECKING:
    import torch
    from torch import nn

WORKSPACE_BYTES = 1 << 30
OPT_BATCH = 8  # the batch a dynamic engine is tuned for (capped by max_batch)


def _tensorrt():  # noqa: ANN202 - the module
    try:
        import tensorrt
    except ImportError:
        raise MissingRuntimeError("TensorRT export needs the tensorrt Python package and NVIDIA's libraries, which "
                                  "are not installed; on a machine with a CUDA GPU install TensorRT 10 "
                                  "(pip install 'ofakit[tensorrt]')") from None
    return tensorrt


def require(precision: str) -> dict[str, str]:
    """TensorRT's and CUDA's versions; raises MissingRuntimeError without TensorRT 10 or a CUDA GPU."""
    import torch

    trt = _tensorrt()
    if not torch.cuda.is_available():
        raise MissingRuntimeError("TensorRT export needs a CUDA GPU, and torch sees none "
                                  f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
    if precision != "fp32" and not hasattr(trt.BuilderFlag, precision.upper()):
        raise MissingRuntimeError(f"TensorRT {trt.__version__} has no {precision.upper()} builder flag "
                                  "(TensorRT 11 removed it); use TensorRT 10 for fp16/int8 engines")
    return {"tensorrt": trt.__version__, "cuda": str(torch.version.cuda), "gpu": torch.cuda.get_device_name()}


def _opt_batch(spec: ArtifactSpec) -> int:
    return spec.batch or min(OPT_BATCH, spec.max_batch)


def build_engine(model: nn.Module, path: Path, spec: ArtifactSpec,
                 calibration: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Export ONNX next to `path`, build a serialized engine from it and write the engine to `path`.

    Args:
        calibration: for int8, batches of real input images (re-batched to the engine's batch size).
    """
    trt = _tensorrt()
    onnx_path = path.with_name(path.name + ".onnx")
    onnx_facts = export_onnx(model, onnx_path, spec)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse the subnet's ONNX: {errors}")
    onnx_path.unlink()

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if spec.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: fp32 layers would run in TF32 on Ampere and newer
    else:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = None
    if not spec.batch:  # a dynamic batch needs the range of shapes to build for
        shape = (3, spec.resolution, spec.resolution)
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, *shape), (_opt_batch(spec), *shape), (spec.max_batch, *shape))
        config.add_optimization_profile(profile)
    batches: list[torch.Tensor] = []
    if spec.precision == "int8":
        batches = _rebatch(calibration, _opt_batch(spec))
        if not batches:
            raise ExportError(f"an int8 engine needs at least {_opt_batch(spec)} calibration images")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, batches)
        if profile is not None:
            config.set_calibration_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError("TensorRT could not build an engine for the subnet (its log above says why)")
    path.write_bytes(bytes(engine))
    facts = {"builder": f"TensorRT {trt.__version__}", "onnx_opset": onnx_facts["opset"],
             "workspace_bytes": WORKSPACE_BYTES}
    if not spec.batch:
        facts["optimization_profile"] = {"min": 1, "opt": _opt_batch(spec), "max": spec.max_batch}
    if spec.precision == "int8":
        facts["int8_calibration"] = {"calibrator": "IInt8EntropyCalibrator2", "batches": len(batches),
                                     "images": sum(int(b.shape[0]) for b in batches)}
    return facts


def _rebatch(calibration: Sequence[torch.Tensor], size: int) -> list[torch.Tensor]:
    """The calibration images in batches of the engine's batch size (TensorRT calibrates at that shape)."""
    import torch

    if not calibration:
        return []
    images = torch.cat(list(calibration))
    return [images[i:i + size] for i in range(0, len(images) - size + 1, size)]


def _calibrator(trt, batches: Sequence[torch.Tensor]):  # noqa: ANN001, ANN202 - TensorRT types
    """An entropy calibrator that hands TensorRT one CUDA batch at a time."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self._current = None  # keeps the batch TensorRT is reading alive

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._current = batch.to("cuda", dtype=batches[0].dtype).contiguous()
            return [int(self._current.data_ptr())]

        def read_calibration_cache(self) -> None:
            return None

        def write_calibration_cache(self, cache: object) -> None:
            return None

    return EntropyCalibrator()


def load_engine(path: Path, spec: ArtifactSpec) -> Loaded:
    """Deserialize the engine and run it on the current CUDA stream."""
    import torch

    trt = _tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise ExportError(f"TensorRT could not load the engine {path}")
    context = engine.create_execution_context()

    def predict(x):  # noqa: ANN001, ANN202 - numpy in, numpy out
        inputs = torch.from_numpy(x).to("cuda").contiguous()
        if not context.set_input_shape(INPUT_NAME, tuple(inputs.shape)):
            raise ExportError(f"the TensorRT engine refused an input of shape {tuple(inputs.shape)} (its batches: "
                              f"{spec.batch or f'1-{spec.max_batch}'})")
        outputs = torch.empty(tuple(context.get_tensor_shape(OUTPUT_NAME)), dtype=torch.float32, device="cuda")
        context.set_tensor_address(INPUT_NAME, inputs.data_ptr())
        context.set_tensor_address(OUTPUT_NAME, outputs.data_ptr())
        stream = torch.cuda.current_stream()
        if not context.execute_async_v3(stream.cuda_stream):
            raise ExportError("TensorRT failed to run the engine")
        stream.synchronize()
        return outputs.cpu().numpy()

    return Loaded(predict)


FORMATS.add("tensorrt", ExportFormat(
    name="tensorrt", suffixes=(".engine", ".plan"), precisions=("fp32", "fp16", "int8"),
    runtime="TensorRT (CUDA)", device="cuda", require=require, build=build_engine, load=load_engine,
), aliases=("trt",))

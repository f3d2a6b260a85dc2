"""Core ML backend: conversion with coremltools (traced TorchScript -> ML program) works on any OS; timing runs
`MLModel.predict`, which exists only on macOS, so elsewhere `load` raises a clear error.

Compute units and precision come from the device file (`compute_units: ALL | CPU_ONLY | CPU_AND_GPU | CPU_AND_NE`).
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ofakit.errors import BackendUnavailableError
from ofakit.latency.backends.base import Backend, Runner, missing_module, require, timed_calls

if TYPE_CHECKING:
    from torch import nn

INSTALL = "pip install coremltools (timing needs macOS)"


class _PredictRunner(Runner):
    def __init__(self, mlmodel: Any, feed: dict[str, Any]) -> None:
        self.mlmodel, self.feed = mlmodel, feed

    def time(self, n: int) -> list[float]:
        return timed_calls(lambda: self.mlmodel.predict(self.feed), n)


class CoreMLBackend(Backend):
    name = "coreml"
    precisions = ("fp32", "fp16")

    @classmethod
    def unavailable(cls) -> str | None:
        if sys.platform != "darwin":
            return "Core ML prediction runs only on macOS"
        return missing_module("coremltools")

    def convert(self, model: nn.Module, input_shape: tuple[int, ...]) -> Any:
        """The Core ML model (an ML program) of an eval-mode torch model."""
        ct = require("coremltools", INSTALL, self.name)
        import torch

        traced = torch.jit.trace(model.eval(), torch.randn(input_shape))
        units = self.settings.compute_units or "ALL"
        if units not in ct.ComputeUnit.__members__:
            raise BackendUnavailableError(f"device {self.device.name!r}: compute_units {units!r} is not one of "
                                          f"{', '.join(ct.ComputeUnit.__members__)}")
        precision = ct.precision.FLOAT16 if self.settings.precision == "fp16" else ct.precision.FLOAT32
        return ct.convert(traced, inputs=[ct.TensorType(name="x", shape=input_shape)], convert_to="mlprogram",
                          compute_units=ct.ComputeUnit[units], compute_precision=precision,
                          skip_model_load=sys.platform != "darwin")

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        if sys.platform != "darwin":
            raise BackendUnavailableError(f"device {self.device.name!r}: Core ML timing needs macOS (this is "
                                          f"{sys.platform}); conversion alone works here via CoreMLBackend.convert")
        import numpy as np

        mlmodel = self.convert(model, input_shape)
        x = np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
        return _PredictRunner(mlmodel, {"x": x})

    def environment(self) -> dict[str, Any]:
        import platform

        ct = require("coremltools", INSTALL, self.name)
        return {"runtime": "coremltools", "runtime_version": ct.__version__, "compute_units":
                self.settings.compute_units or "ALL", "host": platform.platform()}

"""PyTorch eager backend: CPU timed by the wall clock, CUDA timed with CUDA events after a synchronize.

A `gpu` device runs on CUDA (fp32 or fp16); any other kind on the CPU (fp32) with the device's thread count.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ofakit.errors import BackendUnavailableError
from ofakit.latency.backends.base import Backend, Runner, host_cpu, missing_module, timed_calls

if TYPE_CHECKING:
    from torch import nn


class _EagerRunner(Runner):
    def __init__(self, model: Any, x: Any, cuda: bool) -> None:
        self.model, self.x, self.cuda = model, x, cuda

    def time(self, n: int) -> list[float]:
        import torch

        with torch.inference_mode():
            if not self.cuda:
                return timed_calls(lambda: self.model(self.x), n)
            out = []
            for _ in range(n):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                self.model(self.x)
                end.record()
                end.synchronize()
                out.append(start.elapsed_time(end))
            return out


class TorchBackend(Backend):
    name = "torch"
    precisions = ("fp32", "fp16")

    def __init__(self, device: Any) -> None:
        super().__init__(device)
        self.cuda = device.kind == "gpu"
        if not self.cuda and self.settings.precision != "fp32":
            raise BackendUnavailableError(f"device {device.name!r}: the torch backend runs fp16 on CUDA only; "
                                          "use fp32 on the CPU")

    @classmethod
    def unavailable(cls) -> str | None:
        return missing_module("torch")

    def _check_cuda(self) -> None:
        import torch

        if self.cuda and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {self.device.name!r} is a GPU device, but torch "
                                          f"{torch.__version__} sees no CUDA GPU here; run on the machine with the GPU")

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        import torch

        self._check_cuda()
        if self.settings.threads and not self.cuda:
            torch.set_num_threads(self.settings.threads)
        dtype = torch.float16 if self.settings.precision == "fp16" else torch.float32
        dev = "cuda" if self.cuda else "cpu"
        model = model.eval().to(device=dev, dtype=dtype)
        x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0)).to(device=dev, dtype=dtype)
        return _EagerRunner(model, x, self.cuda)

    def environment(self) -> dict[str, Any]:
        import torch

        self._check_cuda()
        threads = self.settings.threads if self.cuda else self.settings.threads or torch.get_num_threads()
        env: dict[str, Any] = {"runtime": "torch", "runtime_version": torch.__version__, "host": host_cpu(),
                               "threads": threads}  # the device's threads, which `load` sets, else torch's default
        if self.cuda:
            env["gpu"] = torch.cuda.get_device_name()
            env["cuda"] = torch.version.cuda
        return env

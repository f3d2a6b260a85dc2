"""Depthwise convolution for training on a CPU, with its weight gradient from a Numba kernel.

PyTorch's CPU convolution (oneDNN) computes the weight gradient of a depthwise 5x5 or 7x7 convolution about 4x slower
than this module's kernel (measured on the shapes of `ofa-mbv3-cifar`'s full network, batch 128, channels_last,
2 threads: 251 ms against 65 ms a step for its twenty 7x7 layers; `bench/depthwise_grad.py`), and that gradient was
~40 % of a training step there. The forward pass and the input gradient stay with oneDNN, which is fast at both, and
so does the weight gradient of 3x3 kernels (faster there).

The kernel reads the input and the output gradient as NHWC arrays (a channels_last tensor's own memory, no copy),
and for every output position adds `grad[n, h, w, :] * x[n, h*s - p + i, w*s - p + j, :]` into the tap (i, j), the
channel axis innermost so that it vectorizes. The batch is cut into a fixed number of chunks (not one per thread), each
summed on its own and then added in order: the result is the same whatever the number of threads.

Which backend computes the weight gradient is chosen per forward pass, under `weight_grad_backend(name)`:
- `auto` (the default): Numba for kernels >= 5 on a CPU float32 tensor when Numba is installed, oneDNN otherwise
  (and, with a warning, for the rest of the process once the kernel has failed: a broken Numba never stops a run);
- `numba`: the same, but an error when Numba is missing;
- `onednn`: always PyTorch's own convolution backward.
Anywhere else (no gradient needed, CUDA, other dtypes) the layer is a plain `F.conv2d`.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ofakit.errors import ConfigError

BACKENDS = ("auto", "numba", "onednn")
MIN_KERNEL = 5  # 3x3 weight gradients are faster under oneDNN (measured: 9 ms against 18 ms a step)
CHUNKS = 8  # batch chunks summed apart: enough for the threads of a workstation, fixed so results do not depend on them

_NO_NUMBA = ("depthwise_grad is 'numba' but numba is not installed: pip install 'ofakit[cpu-train]', or set "
             "depthwise_grad: auto")
_BACKEND: contextvars.ContextVar[str] = contextvars.ContextVar("ofakit_depthwise_weight_grad", default="auto")
_FAILED: list[str] = []  # the Numba kernel's first failure in this process: `auto` then stays on oneDNN


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"depthwise_grad {name!r} is not a backend; choices: {', '.join(BACKENDS)}")
    return name


@contextlib.contextmanager
def weight_grad_backend(name: str) -> Iterator[None]:
    """Within the block, depthwise layers compute their weight gradient with backend `name` (see the module doc)."""
    token = _BACKEND.set(check_backend(name))
    try:
        yield
    finally:
        _BACKEND.reset(token)


@functools.cache
def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_note(name: str) -> str | None:
    """One line for a training log on a CPU when the slower backend will run for want of Numba, None otherwise; a
    ConfigError when backend `name` needs Numba and it is missing (so a run can refuse before it starts)."""
    check_backend(name)
    if name == "numba" and not numba_available():
        raise ConfigError(_NO_NUMBA)
    if name == "auto" and not numba_available():
        return ("depthwise 5x5/7x7 weight gradients run on oneDNN: install numba (pip install 'ofakit[cpu-train]') "
                "for up to ~1.4x faster training steps on a CPU")
    return None


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """`F.conv2d(x, weight, None, stride, padding, groups=channels)`, whose weight gradient comes from the backend
    chosen by `weight_grad_backend` (the module doc says when)."""
    if _use_numba(x, weight):
        return _DepthwiseConv.apply(x, weight, stride, padding)
    return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])


def _use_numba(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if not (torch.is_grad_enabled() and weight.requires_grad):
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if weight.shape[-1] < MIN_KERNEL:
        return False
    backend = _BACKEND.get()
    if backend == "onednn" or (backend == "auto" and _FAILED):
        return False
    if backend == "numba" and not numba_available():
        raise ConfigError(_NO_NUMBA)
    return numba_available()


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.auto = stride, padding, _BACKEND.get() == "auto"
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _aten_backward(x, grad, weight, s, p, weight_grad=False)
        if ctx.needs_input_grad[1]:  # in the weight's own strides, as oneDNN gives it (momentum buffers copy them)
            try:
                grad_w = torch.empty_like(weight).copy_(numba_weight_grad(x, grad, weight.shape[-1], s, p))
            except Exception as exc:  # a broken Numba or LLVM: under `auto`, oneDNN from now on rather than a crash
                if not ctx.auto:
                    raise
                _fail(exc)
                grad_w = _aten_backward(x, grad, weight, s, p, weight_grad=True)
        return grad_x, grad_w, None, None


def _aten_backward(x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor, s: int, p: int, *,
                   weight_grad: bool) -> torch.Tensor:
    """PyTorch's own input gradient, or weight gradient, of the depthwise convolution."""
    mask = [not weight_grad, weight_grad, False]
    out = torch.ops.aten.convolution_backward(grad, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0],
                                              weight.shape[0], mask)
    return out[1] if weight_grad else out[0]


def _fail(exc: Exception) -> None:
    if not _FAILED:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        _FAILED.append(f"{type(exc).__name__}: {first}")
        warnings.warn(f"ofakit: the Numba depthwise weight-gradient kernel failed ({_FAILED[0]}); oneDNN computes "
                      "those gradients for the rest of this process (depthwise_grad: numba makes this an error)",
                      RuntimeWarning, stacklevel=2)


def numba_weight_grad(x: torch.Tensor, grad: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """The (C, 1, kernel, kernel) weight gradient of a depthwise convolution of `x` (N, C, H, W) whose output's
    gradient is `grad`, on the CPU, through the Numba kernel."""
    import numba

    from ofakit.supernet.depthwise_kernel import weight_grad

    channels = x.shape[1]
    nhwc = [t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).numpy() for t in (x, grad)]
    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        out = weight_grad(nhwc[0], nhwc[1], kernel, stride, padding, min(CHUNKS, x.shape[0]))
    finally:  # Numba's OpenMP pool, started on the first call, resets the process's OpenMP threads (torch's too)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return torch.from_numpy(out).view(channels, 1, kernel, kernel)

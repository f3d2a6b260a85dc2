"""The depthwise convolution whose CPU weight gradient comes from a Numba kernel: same forward, same input gradient,
the weight gradient of PyTorch's own backward to float32 rounding, and the choice of backend."""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ofakit.errors import ConfigError
from ofakit.space import get_space
from ofakit.supernet import build_supernet
from ofakit.supernet import depthwise
from ofakit.supernet.depthwise import check_backend, cpu_note, depthwise_conv2d, weight_grad_backend

needs_numba = pytest.mark.skipif(not depthwise.numba_available(),
                                 reason="numba is not installed (pip install 'ofakit[cpu-train]')")


def _case(n: int, c: int, side: int, k: int, s: int, seed: int = 0, memory=torch.channels_last):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, side, side, generator=gen).contiguous(memory_format=memory).requires_grad_()
    w = torch.randn(c, 1, k, k, generator=gen).requires_grad_()
    side_out = (side + 2 * (k // 2) - k) // s + 1
    g = torch.randn(n, c, side_out, side_out, generator=gen)
    return x, w, g


def _grads(backend: str, x, w, g, s: int):
    with weight_grad_backend(backend):
        y = depthwise_conv2d(x, w, s, w.shape[-1] // 2)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    return y.detach(), gx, gw


@needs_numba
@pytest.mark.parametrize("n,c,side,k,s", [
    (5, 7, 9, 5, 1), (3, 16, 8, 7, 2), (9, 24, 16, 7, 1), (2, 3, 1, 7, 1), (1, 4, 3, 5, 2), (12, 5, 6, 3, 1),
    (4, 8, 7, 7, 2),
])
def test_numba_gradients_equal_onednn_ones(n, c, side, k, s):
    """Odd sizes, maps smaller than the kernel, a batch smaller than the kernel's chunks, stride 2, and a 3x3 kernel
    through the Numba kernel directly (the layer leaves 3x3 to oneDNN)."""
    x, w, g = _case(n, c, side, k, s)
    y_ref, gx_ref, gw_ref = _grads("onednn", x, w, g, s)
    y, gx, gw = _grads("numba", x, w, g, s)
    assert torch.equal(y, y_ref) and torch.equal(gx, gx_ref)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-5 * gw_ref.abs().max().item())
    direct = depthwise.numba_weight_grad(x.detach(), g, k, s, k // 2)
    torch.testing.assert_close(direct, gw_ref, rtol=1e-5, atol=1e-5 * gw_ref.abs().max().item())


@needs_numba
def test_an_nchw_input_and_gradient_give_the_same_weight_gradient():
    x, w, g = _case(6, 10, 8, 5, 1, memory=torch.contiguous_format)
    want = depthwise.numba_weight_grad(x.detach().contiguous(memory_format=torch.channels_last), g, 5, 1, 2)
    assert torch.equal(depthwise.numba_weight_grad(x.detach(), g, 5, 1, 2), want)


@needs_numba
def test_the_weight_gradient_does_not_depend_on_the_number_of_threads():
    x, w, g = _case(32, 24, 8, 7, 1, seed=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = depthwise.numba_weight_grad(x.detach(), g, 7, 1, 3)
        torch.set_num_threads(2)
        two = depthwise.numba_weight_grad(x.detach(), g, 7, 1, 3)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


@needs_numba
def test_which_calls_take_the_numba_path(monkeypatch):
    calls = []
    real = depthwise.numba_weight_grad
    monkeypatch.setattr(depthwise, "numba_weight_grad", lambda *a: calls.append(a[2]) or real(*a))

    def backward(k: int, *, backend: str = "auto", dtype=torch.float32, grad: bool = True, weight_grad: bool = True):
        x = torch.randn(2, 4, 6, 6, dtype=dtype, requires_grad=True)
        w = torch.randn(4, 1, k, k, dtype=dtype, requires_grad=weight_grad)
        with torch.set_grad_enabled(grad), weight_grad_backend(backend):
            y = depthwise_conv2d(x, w, 1, k // 2)
        if y.requires_grad:
            y.sum().backward()

    backward(5)
    backward(7)
    assert calls == [5, 7]
    backward(3)  # oneDNN is as fast at 3x3
    backward(7, backend="onednn")
    backward(7, dtype=torch.float64)
    backward(7, grad=False)  # evaluation, export
    backward(7, weight_grad=False)  # frozen weights (the gradient search)
    assert calls == [5, 7]
    backward(5, backend="numba")
    assert calls == [5, 7, 5]


def test_without_numba_auto_falls_back_and_numba_is_an_error(monkeypatch):
    monkeypatch.setattr(depthwise, "numba_available", lambda: False)
    x, w, g = _case(2, 3, 5, 5, 1)
    y_ref = F.conv2d(x, w, None, 1, 2, 1, 3)
    with weight_grad_backend("auto"):
        y = depthwise_conv2d(x, w, 1, 2)
    assert y.grad_fn is not None and "Depthwise" not in type(y.grad_fn).__name__
    assert torch.equal(y, y_ref)
    with weight_grad_backend("numba"), pytest.raises(ConfigError, match="numba is not installed"):
        depthwise_conv2d(x, w, 1, 2)
    assert "install numba" in cpu_note("auto")
    assert cpu_note("onednn") is None


def test_backend_names_are_checked():
    with pytest.raises(ConfigError, match="choices: auto, numba, onednn"):
        check_backend("mkl")
    with pytest.raises(ConfigError, match="'mkl'"):
        with weight_grad_backend("mkl"):
            pass
    from ofakit.train.config import DEPTHWISE_GRAD

    assert DEPTHWISE_GRAD == depthwise.BACKENDS


@needs_numba
def test_a_supernet_step_gets_the_same_gradients_from_both_backends():
    """Every parameter's gradient of the largest subnet (7x7 kernels) and of a mixed-kernel subnet, training mode."""
    space = get_space("ofa-mbv3-cifar")
    torch.manual_seed(0)
    supernet = build_supernet(space).train().to(memory_format=torch.channels_last)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last)
    for arch in (space.largest(), space.sample(random.Random(4))):
        supernet.set_active(arch)
        grads = {}
        for backend in ("onednn", "numba"):
            supernet.zero_grad(set_to_none=True)
            with weight_grad_backend(backend):
                supernet(x).square().mean().backward()
            grads[backend] = {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}
        assert grads["onednn"].keys() == grads["numba"].keys()
        assert any("dw_conv.weight" in n for n in grads["numba"])
        for name, ref in grads["onednn"].items():
            torch.testing.assert_close(grads["numba"][name], ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item() + 1e-9,
                                       msg=name)


@needs_numba
def test_torch_keeps_its_number_of_threads():
    """Numba's OpenMP pool sets the process's OpenMP threads when it starts (to all cores): torch's own count, which
    a user may have lowered, must survive it, or every later op runs on other threads and a resumed run drifts."""
    code = ("import torch\nfrom ofakit.supernet.depthwise import numba_weight_grad\n"
            "x = torch.randn(2, 8, 4, 4)\nnumba_weight_grad(x, torch.randn(2, 8, 4, 4), 5, 1, 2)\n"
            "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


@needs_numba
def test_the_kernel_compiles_where_numba_finds_no_place_to_cache_it():
    """A read-only install and home: Numba refuses `cache=True` at decoration; the kernel is compiled uncached."""
    code = ("import numba.core.caching as caching\ncaching.CacheImpl._locator_classes = []\n"
            "import torch\nfrom ofakit.supernet.depthwise import numba_weight_grad\n"
            "x, g = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)\n"
            "want = torch.ops.aten.convolution_backward(g, x, torch.zeros(4, 1, 5, 5), None, [1, 1], [2, 2], [1, 1], "
            "False, [0, 0], 4, [False, True, False])[1]\n"
            "print(torch.allclose(numba_weight_grad(x, g, 5, 1, 2), want, rtol=1e-5, atol=1e-5))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


@needs_numba
def test_a_failing_kernel_falls_back_to_onednn_under_auto_and_is_an_error_under_numba(monkeypatch):
    from ofakit.supernet import depthwise_kernel

    monkeypatch.setattr(depthwise, "_FAILED", [])
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("LLVM ERROR: no such CPU\nmore")

    monkeypatch.setattr(depthwise_kernel, "weight_grad", broken)
    x, w, g = _case(4, 6, 7, 5, 1)
    _, gx_ref, gw_ref = _grads("onednn", x, w, g, 1)
    with pytest.raises(RuntimeError, match="LLVM ERROR"):
        _grads("numba", x, w, g, 1)
    with pytest.warns(RuntimeWarning, match=r"kernel failed \(RuntimeError: LLVM ERROR: no such CPU\); oneDNN"):
        _, gx, gw = _grads("auto", x, w, g, 1)
    assert torch.equal(gx, gx_ref) and torch.equal(gw, gw_ref)
    assert len(calls) == 2
    _grads("auto", x, w, g, 1)  # stays on oneDNN: the kernel is not tried again
    assert len(calls) == 2

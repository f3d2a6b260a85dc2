"""The Numba kernel behind `ofakit.supernet.depthwise` (imported only when a weight gradient needs it, since Numba
takes a moment to load): a depthwise convolution's weight gradient from NHWC arrays. Compiled on first use and cached
on disk by Numba where it finds a writable place (next to this file, else its user-wide cache), else compiled anew in
each process (a few seconds)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange


def _weight_grad(x: np.ndarray, grad: np.ndarray, k: int, s: int, p: int, chunks: int) -> np.ndarray:
    """(C, k, k) gradient of a depthwise conv (kernel k, stride s, padding p) of `x` (N, H, W, C) whose output
    gradient is `grad` (N, Ho, Wo, C); the batch is summed in `chunks` parts, then the parts in order."""
    n_all, h_in, w_in, channels = x.shape
    h_out, w_out = grad.shape[1], grad.shape[2]
    partial = np.zeros((chunks, k, k, channels), np.float32)
    for chunk in prange(chunks):
        acc = partial[chunk]
        for n in range(chunk * n_all // chunks, (chunk + 1) * n_all // chunks):
            for ho in range(h_out):
                for i in range(k):
                    hi = ho * s - p + i
                    if hi < 0 or hi >= h_in:
                        continue
                    for wo in range(w_out):
                        g = grad[n, ho, wo]
                        for j in range(k):
                            wi = wo * s - p + j
                            if wi < 0 or wi >= w_in:
                                continue
                            xv = x[n, hi, wi]
                            tap = acc[i, j]
                            for c in range(channels):
                                tap[c] += g[c] * xv[c]
    out = np.zeros((channels, k, k), np.float32)
    for chunk in range(chunks):
        for i in range(k):
            for j in range(k):
                for c in range(channels):
                    out[c, i, j] += partial[chunk, i, j, c]
    return out


try:
    weight_grad = njit(parallel=True, fastmath={"contract"}, cache=True)(_weight_grad)
except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install and home)
    weight_grad = njit(parallel=True, fastmath={"contract"})(_weight_grad)

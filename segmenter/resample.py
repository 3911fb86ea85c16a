"""Framework-neutral (numpy) resampling weights shared by the Paddle model and its PyTorch twin."""
import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix of 1-D bilinear resampling, align_corners=False, as F.interpolate computes it."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)  # half-pixel centres, clamped at 0
    return _weights_at(src, n_in)


@functools.lru_cache(maxsize=64)
def bilinear_weights_by_scale(n_in: int, scale: float) -> np.ndarray:
    """[floor(n_in * scale), n_in] bilinear matrix of F.interpolate(scale_factor=scale, align_corners=False) in
    PyTorch: the source step is 1 / scale, not n_in / n_out (they differ on odd sizes, e.g. 3 -> 1 at scale 0.5).
    Paddle's kernel differs from it twice: it steps by n_in / n_out, and an output of size 1 copies pixel 0."""
    n_out = int(np.floor(n_in * scale))
    src = np.maximum((np.arange(n_out) + 0.5) / scale - 0.5, 0.0)
    return _weights_at(src, n_in)


def _weights_at(src: np.ndarray, n_in: int) -> np.ndarray:
    """[len(src), n_in] matrix that linearly interpolates the n_in inputs at source positions src (clamped)."""
    n_out = len(src)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    a = np.zeros((n_out, n_in), np.float64)
    np.add.at(a, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(a, (np.arange(n_out), i1), w1)
    return a.astype(np.float32)

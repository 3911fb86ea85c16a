"""Framework-neutral (numpy) resampling weights shared by the Paddle model and its PyTorch twin."""

import functools

import numpy as np

# pos_embed_interp values: official Segmenter bilinear; PaddleSeg, MMSeg, mmpretrain bicubic; timm bicubic with
# antialias (PyTorch's antialiased kernel, a = -0.5, also when enlarging). All align_corners=False.
POS_EMBED_INTERPOLATIONS = ("bilinear", "bicubic", "bicubic_antialias")


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


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter a (PyTorch: -0.75 plain, -0.5 antialiased; PIL: -0.5)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_antialias_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix of F.interpolate(mode="bicubic", antialias=True, align_corners=False) in PyTorch
    (timm's pos-embed resize): a = -0.5, the kernel stretched by the scale when shrinking, each row normalised to
    sum 1, taps outside the input dropped (not clamped)."""
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    a = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = _cubic((np.arange(lo, hi) - center + 0.5) * inv, -0.5)
        a[i, lo:hi] = w / w.sum()
    return a.astype(np.float32)

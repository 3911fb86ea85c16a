"""Slide-window placement, shared by the Paddle engine, the PyTorch twin and the attention maps (no framework)."""

import math


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window origins along one axis: ceil((size - crop) / stride) + 1 windows, the last clamped to size - crop."""
    n = max(math.ceil((size - crop) / stride), 0) + 1
    return [min(i * stride, max(size - crop, 0)) for i in range(n)]

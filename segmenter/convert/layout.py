"""Canonical weights in either framework's layout: Paddle stores a Linear weight [in, out], PyTorch [out, in]."""

import re
from typing import Dict, Mapping

import numpy as np

from segmenter.convert.keymaps import LINEAR_WEIGHTS, TORCH_BN_BUFFERS, TORCH_BN_COUNTER


def is_linear_weight(key: str) -> bool:
    """True for canonical keys that transpose between Paddle and PyTorch (the explicit LINEAR_WEIGHTS table)."""
    return any(re.fullmatch(p, key) for p in LINEAR_WEIGHTS)


def _rename_bn(key: str, to_torch: bool) -> str:
    """A BatchNorm statistic's name in the other framework (TORCH_BN_BUFFERS); other keys unchanged."""
    pairs = TORCH_BN_BUFFERS.items() if to_torch else ((t, p) for p, t in TORCH_BN_BUFFERS.items())
    for src, dst in pairs:
        if key.endswith(src):
            return key[: -len(src)] + dst
    return key


def to_layout(state: Mapping[str, np.ndarray], layout: str, source_layout: str = "paddle") -> Dict[str, np.ndarray]:
    """Paddle layout <-> PyTorch layout of canonical keys: transpose exactly the LINEAR_WEIGHTS keys, and give
    BatchNorm statistics the other framework's names (PyTorch also counts batches: 0 going there, dropped back)."""
    if layout not in ("paddle", "torch") or source_layout not in ("paddle", "torch"):
        raise ValueError(f"layouts are 'paddle' or 'torch', got {layout!r} from {source_layout!r}")
    if layout == source_layout:
        return dict(state)
    to_torch = layout == "torch"
    out = {}
    for k, v in state.items():
        if not to_torch and re.fullmatch(TORCH_BN_COUNTER, k):
            continue
        out[_rename_bn(k, to_torch)] = np.ascontiguousarray(v.T) if is_linear_weight(k) else v
        if to_torch and k.endswith(".bn._mean"):
            out[k[: -len("_mean")] + "num_batches_tracked"] = np.zeros((), dtype=np.int64)
    return out


def strip_prefix(state: Mapping[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    """Keys under `prefix`, with it removed (e.g. the backbone part of whole-model weights)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

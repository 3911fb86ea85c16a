"""Strict loading of weight files (local or by URL) into our PyTorch modules; pos_embed alone may be resampled.

Twin of `segmenter/models/weights.py`: any file `segmenter.convert` reads (ours, official, PaddleSeg, timm,
.npz) is accepted; it arrives in the canonical (Paddle) layout and its Linear weights are transposed here.
"""

from typing import Dict, Mapping

import numpy as np
import torch
import torch.nn as nn

from segmenter.convert.matching import WeightsMismatchError, match_state, select_for, square_grid_side  # noqa: F401
from segmenter.pytorch.pos_embed import resample_pos_embed


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """Read any supported weights file into {key: array} in our PyTorch layout (`backbone.*`, `decoder.*`)."""
    from segmenter.convert import load_weights, to_layout

    return to_layout(load_weights(path).state, "torch")


def _resample(layer: nn.Module, key: str, value: np.ndarray, target_shape) -> np.ndarray:
    """Resample a pos_embed array to the grid `layer` (or its backbone) was built for."""
    vit = layer if hasattr(layer, "grid_size") else getattr(layer, "backbone", None)
    side = square_grid_side(key, value, vit.num_prefix_tokens, target_shape)
    out = resample_pos_embed(
        torch.from_numpy(value), (side, side), vit.grid_size, vit.num_prefix_tokens, vit.pos_embed_interp
    )
    return out.numpy()


def load_state_dict_strict(layer: nn.Module, state: Mapping[str, np.ndarray], source: str) -> None:
    """Set every parameter of `layer` from `state`; missing, unexpected or mis-shaped keys are errors."""
    target = layer.state_dict()
    shapes = {k: list(p.shape) for k, p in target.items()}
    values = match_state(
        shapes, state, source, type(layer).__name__, lambda key, value, shape: _resample(layer, key, value, shape)
    )
    layer.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)).to(target[k].dtype) for k, v in values.items()}, strict=True
    )


def load_pretrained(layer: nn.Module, path: str) -> None:
    """Load a weights file (or an http(s) URL of one, via convert.files.resolve_weights) into `layer` strictly.

    A backbone also accepts a whole-model file: its `backbone.*` keys are used and the decoder keys dropped.
    """
    load_state_dict_strict(layer, select_for(list(layer.state_dict()), read_state_dict(path)), path)

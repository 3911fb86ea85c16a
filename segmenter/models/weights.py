"""Strict loading of weight files (local or by URL) into our Paddle layers; pos_embed alone may be resampled."""

from typing import Dict, Mapping

import numpy as np
import paddle
import paddle.nn as nn

from segmenter.convert.matching import WeightsMismatchError, match_state, select_for, square_grid_side  # noqa: F401
from segmenter.models.pos_embed import resample_pos_embed


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """Read any supported weights file into {key: array} in our Paddle layout (`backbone.*`, `decoder.*`).

    Accepted: ours (.pdparams, .pth, .safetensors), the official Segmenter checkpoint.pth, PaddleSeg's
    Segmenter .pdparams, timm ViT (.pth/.bin/.safetensors) and Google .npz; the family is recognised from
    the keys (see segmenter.convert). No file runs code: .pdparams goes through a restricted unpickler and
    PyTorch files load with weights_only=True.
    """
    from segmenter.convert import load_weights

    return load_weights(path).state


def _resample(layer: nn.Layer, key: str, value: np.ndarray, target_shape) -> np.ndarray:
    """Resample a pos_embed array to the grid `layer` (or its backbone) was built for."""
    vit = layer if hasattr(layer, "grid_size") else getattr(layer, "backbone", None)
    side = square_grid_side(key, value, vit.num_prefix_tokens, target_shape)
    out = resample_pos_embed(
        paddle.to_tensor(value), (side, side), vit.grid_size, vit.num_prefix_tokens, vit.pos_embed_interp
    )
    return out.numpy()


def load_state_dict_strict(layer: nn.Layer, state: Mapping[str, np.ndarray], source: str) -> None:
    """Set every parameter of `layer` from `state`; missing, unexpected or mis-shaped keys are errors."""
    target = layer.state_dict()
    shapes = {k: list(p.shape) for k, p in target.items()}
    values = match_state(
        shapes, state, source, type(layer).__name__, lambda key, value, shape: _resample(layer, key, value, shape)
    )
    layer.set_state_dict({k: v.astype(str(target[k].dtype).replace("paddle.", "")) for k, v in values.items()})


def load_pretrained(layer: nn.Layer, path: str) -> None:
    """Load a weights file (or an http(s) URL of one, via convert.files.resolve_weights) into `layer` strictly.

    A backbone also accepts a whole-model file: its `backbone.*` keys are used and the decoder keys dropped.
    """
    load_state_dict_strict(layer, select_for(list(layer.state_dict()), read_state_dict(path)), path)

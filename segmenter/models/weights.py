"""Strict loading of local weight files into our Paddle layers; pos_embed is the one key that may be resampled."""
import math
from typing import Dict, Mapping

import numpy as np
import paddle
import paddle.nn as nn

from segmenter.models.pos_embed import resample_pos_embed


class WeightsMismatchError(ValueError):
    """A weights file whose keys or shapes do not match the model."""


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
    prefix = vit.num_prefix_tokens
    n_old = value.shape[1] - prefix
    side = int(round(math.sqrt(n_old)))
    if side * side != n_old:
        raise WeightsMismatchError(f"'{key}' holds {n_old} grid tokens, not a square grid; cannot resample it "
                                   f"to {tuple(target_shape)}.")
    out = resample_pos_embed(paddle.to_tensor(value), (side, side), vit.grid_size, prefix, vit.pos_embed_interp)
    return out.numpy()


def load_state_dict_strict(layer: nn.Layer, state: Mapping[str, np.ndarray], source: str) -> None:
    """Set every parameter of `layer` from `state`; missing, unexpected or mis-shaped keys are errors."""
    target = layer.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    values, mismatched = {}, []
    for key, param in target.items():
        if key not in state:
            continue
        value = np.asarray(state[key])
        shape = list(param.shape)
        if list(value.shape) != shape and key.endswith("pos_embed") and value.ndim == 3:
            value = _resample(layer, key, value, shape)
        if list(value.shape) != shape:
            mismatched.append(f"{key}: file {list(value.shape)} vs model {shape}")
            continue
        values[key] = value.astype(str(param.dtype).replace("paddle.", ""))
    if missing or unexpected or mismatched:
        lines = [f"weights file '{source}' does not match {type(layer).__name__}:"]
        if missing:
            lines.append(f"  missing in the file ({len(missing)}): {missing[:20]}")
        if unexpected:
            lines.append(f"  not in the model ({len(unexpected)}): {unexpected[:20]}")
        if mismatched:
            lines.append(f"  shape mismatch ({len(mismatched)}): {mismatched[:20]}")
        lines.append("  Check the config's architecture (embed_dim, depth, patch_size, decoder, num_classes) "
                     "against the weights, or convert the file first with tools/convert.py.")
        raise WeightsMismatchError("\n".join(lines))
    layer.set_state_dict(values)


def load_pretrained(layer: nn.Layer, path: str) -> None:
    """Load a local weights file into `layer` strictly.

    A backbone also accepts a whole-model file: its `backbone.*` keys are used and the decoder keys dropped.
    """
    state = read_state_dict(path)
    own = set(layer.state_dict())
    if not (own & set(state)) and any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    load_state_dict_strict(layer, state, path)

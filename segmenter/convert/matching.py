"""Framework-neutral strict matching of a {key: array} state against a model's parameter shapes.

Shared by `segmenter/models/weights.py` (Paddle) and `segmenter/pytorch/weights.py` (PyTorch): only the
tensors and the final set-state call differ between the two.
"""
import math
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np

from segmenter.convert.core import strip_prefix


class WeightsMismatchError(ValueError):
    """A weights file whose keys or shapes do not match the model."""


def square_grid_side(key: str, value: np.ndarray, num_prefix_tokens: int, target_shape: Sequence[int]) -> int:
    """Side of the square patch grid a stored pos_embed [1, prefix + side*side, C] was trained at."""
    n_old = value.shape[1] - num_prefix_tokens
    side = int(round(math.sqrt(n_old)))
    if side * side != n_old:
        raise WeightsMismatchError(f"'{key}' holds {n_old} grid tokens, not a square grid; cannot resample it "
                                   f"to {tuple(target_shape)}.")
    return side


def match_state(shapes: Mapping[str, List[int]], state: Mapping[str, np.ndarray], source: str, owner: str,
                resample_pos_embed: Callable[[str, np.ndarray, List[int]], np.ndarray]) -> Dict[str, np.ndarray]:
    """Arrays for every key of `shapes` from `state`; missing, unexpected or mis-shaped keys raise one error
    naming them all. A `*pos_embed` of another grid goes through `resample_pos_embed(key, value, shape)`."""
    missing = sorted(set(shapes) - set(state))
    unexpected = sorted(set(state) - set(shapes))
    values, mismatched = {}, []
    for key, shape in shapes.items():
        if key not in state:
            continue
        value = np.asarray(state[key])
        if list(value.shape) != shape and key.endswith("pos_embed") and value.ndim == 3:
            value = resample_pos_embed(key, value, shape)
        if list(value.shape) != shape:
            mismatched.append(f"{key}: file {list(value.shape)} vs model {shape}")
            continue
        values[key] = value
    if missing or unexpected or mismatched:
        lines = [f"weights file '{source}' does not match {owner}:"]
        if missing:
            lines.append(f"  missing in the file ({len(missing)}): {missing[:20]}")
        if unexpected:
            lines.append(f"  not in the model ({len(unexpected)}): {unexpected[:20]}")
        if mismatched:
            lines.append(f"  shape mismatch ({len(mismatched)}): {mismatched[:20]}")
        lines.append("  Check the config's architecture (embed_dim, depth, patch_size, decoder, num_classes) "
                     "against the weights, or convert the file first with tools/convert.py.")
        raise WeightsMismatchError("\n".join(lines))
    return values


def select_for(own_keys: Sequence[str], state: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """A backbone given whole-model weights takes their `backbone.*` part (the decoder keys are dropped)."""
    if not (set(own_keys) & set(state)) and any(k.startswith("backbone.") for k in state):
        return strip_prefix(state, "backbone.")
    return state

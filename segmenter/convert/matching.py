"""Framework-neutral strict matching of a {key: array} state against a model's parameter shapes.

Shared by `segmenter/models/weights.py` (Paddle) and `segmenter/pytorch/weights.py` (PyTorch): only the
tensors and the final set-state call differ between the two.
"""

import math
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np

from segmenter.convert.keydiff import diff_keys, diff_report
from segmenter.convert.layout import strip_prefix


class WeightsMismatchError(ValueError):
    """A weights file whose keys or shapes do not match the model."""


def square_grid_side(key: str, value: np.ndarray, num_prefix_tokens: int, target_shape: Sequence[int]) -> int:
    """Side of the square patch grid a stored pos_embed [1, prefix + side*side, C] was trained at."""
    n_old = value.shape[1] - num_prefix_tokens
    side = int(round(math.sqrt(n_old)))
    if side * side != n_old:
        raise WeightsMismatchError(
            f"'{key}' holds {n_old} grid tokens, not a square grid; cannot resample it to {tuple(target_shape)}."
        )
    return side


def match_state(
    shapes: Mapping[str, List[int]],
    state: Mapping[str, np.ndarray],
    source: str,
    owner: str,
    resample_pos_embed: Callable[[str, np.ndarray, List[int]], np.ndarray],
) -> Dict[str, np.ndarray]:
    """Arrays for every key of `shapes` from `state`; missing, unexpected or mis-shaped keys raise one error
    naming them all. A `*pos_embed` of another grid goes through `resample_pos_embed(key, value, shape)`."""

    def adapt(key: str, value: np.ndarray, shape: List[int]) -> np.ndarray:
        if list(value.shape) != shape and key.endswith("pos_embed") and value.ndim == 3:
            return resample_pos_embed(key, value, shape)
        return value

    values, missing, unexpected, mismatched = diff_keys(shapes, state, adapt)
    error = diff_report(
        f"weights file '{source}' does not match {owner}:",
        missing,
        unexpected,
        [m.replace(": ", ": file ", 1).replace(" vs ", " vs model ") for m in mismatched],
        ("missing in the file", "not in the model", "shape mismatch"),
        "Check the config's architecture (embed_dim, depth, patch_size, decoder, num_classes) "
        "against the weights, or convert the file first with tools/convert.py.",
    )
    if error:
        raise WeightsMismatchError(error)
    return values


def select_for(own_keys: Sequence[str], state: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """A backbone given whole-model weights takes their `backbone.*` part (the decoder keys are dropped)."""
    if not (set(own_keys) & set(state)) and any(k.startswith("backbone.") for k in state):
        return strip_prefix(state, "backbone.")
    return state

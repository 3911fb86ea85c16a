"""Framework-neutral strict matching of a {key: array} state against a model's parameter shapes.

Shared by `segmenter/models/weights.py` (Paddle) and `segmenter/pytorch/weights.py` (PyTorch): only the
tensors and the final set-state call differ between the two.
"""

import math
import re
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from segmenter.convert.keydiff import diff_keys
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
    kinds = (
        ("missing in the file", len(missing), _by_block(missing, shapes)),
        ("not in the model", len(unexpected), _by_block(unexpected, state)),
        (
            "shape mismatch",
            len(mismatched),
            [m.replace(": ", ": file ", 1).replace(" vs ", " vs model ") for m in mismatched],
        ),
    )
    found = [
        f"{label} ({n}): {shown[:SHOWN]}" + (f" and {len(shown) - SHOWN} more" if len(shown) > SHOWN else "")
        for label, n, shown in kinds
        if n
    ]
    if found:  # two lines: every kind of difference with its first keys, then what to do (errors.md row 9)
        raise WeightsMismatchError(
            f"weights file '{source}' does not match {owner}: "
            + "; ".join(found)
            + "\n  Check the config's architecture (embed_dim, depth, patch_size, decoder, num_classes) against the "
            "weights, or convert the file first with tools/convert.py."
        )
    return values


SHOWN = 3  # keys (or blocks) named per kind of difference; the count says how many there are


def _by_block(keys: Sequence[str], every: Iterable[str]) -> List[str]:
    """keys in order, a numbered block all of whose keys (of `every`) are among them folded into one entry
    ('backbone.blocks.2.*': a depth mismatch); a block only partly there keeps its keys ('blocks.0.ls1.gamma')."""

    def block(key: str) -> Optional[str]:
        m = re.match(r"(.*?\.\d+)\.", key)
        return m.group(1) if m else None

    listed, whole = set(keys), {}
    for k in every:
        if block(k) is not None:
            whole[block(k)] = whole.get(block(k), True) and k in listed
    return list(dict.fromkeys(f"{block(k)}.*" if whole.get(block(k)) else k for k in keys))


def select_for(own_keys: Sequence[str], state: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """A backbone given whole-model weights takes their `backbone.*` part (the decoder keys are dropped)."""
    if not (set(own_keys) & set(state)) and any(k.startswith("backbone.") for k in state):
        return strip_prefix(state, "backbone.")
    return state

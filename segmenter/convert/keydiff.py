"""The one key-matching routine: which keys a state lacks, which it has too many, which have the wrong shape.

Used by the converter (does a file hold the complete architecture?) and by both frameworks' strict loaders
(does a file fit this model?); each caller names the three lists in its own words.
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

SHOWN_KEYS = 20  # keys listed per kind in an error; the count says how many there are in all


def diff_keys(
    want: Mapping[str, Sequence[int]],
    state: Mapping[str, Any],
    adapt: Optional[Callable[[str, np.ndarray, List[int]], np.ndarray]] = None,
) -> Tuple[Dict[str, np.ndarray], List[str], List[str], List[str]]:
    """(values that fit, missing keys, unexpected keys, 'key: have vs want' lines) of `state` against the shapes
    `want`. `adapt(key, value, shape)` may reshape a value before its shape is compared (pos_embed resampling)."""
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    values, mismatched = {}, []
    for key, shape in want.items():
        if key not in state:
            continue
        value = np.asarray(state[key])
        if adapt is not None:
            value = adapt(key, value, list(shape))
        if list(value.shape) != list(shape):
            mismatched.append(f"{key}: {list(value.shape)} vs {list(shape)}")
            continue
        values[key] = value
    return values, missing, unexpected, mismatched


def diff_report(
    header: str,
    missing: List[str],
    unexpected: List[str],
    mismatched: List[str],
    labels: Tuple[str, str, str],
    hint: Optional[str] = None,
) -> Optional[str]:
    """The error text naming every kind of difference (a few keys, then a count), or None when there is none."""
    if not (missing or unexpected or mismatched):
        return None
    lines = [header]
    for label, keys in zip(labels, (missing, unexpected, mismatched)):
        if keys:
            lines.append(f"  {label} ({len(keys)}): {keys[:SHOWN_KEYS]}")
    if hint:
        lines.append(f"  {hint}")
    return "\n".join(lines)

"""The one way the engine reads weights and training state: no file runs code, no key is skipped.

Every `.pdparams`, `.pdopt` and legacy `state.pkl` goes through `segmenter.convert.files.SafeUnpickler`
(numpy arrays and plain containers only); a model is filled with `load_state_dict_strict`, which refuses
missing, unexpected and mis-shaped keys by name.
"""

import json
import os
import pickle
from typing import Any, Dict, Optional

import numpy as np

from segmenter.convert.files import PADDLE_NAME_TABLE, SafeUnpickler, UnsafeFileError, check_file, read_pdparams

__all__ = ["CheckpointError", "UnsafeFileError", "read_pdparams", "read_pickle", "read_json", "describe_model"]


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupt or written for another run."""


def read_pickle(path: str) -> Any:
    """A pickle of arrays and plain containers (an optimizer `.pdopt`, a legacy `state.pkl`), never running code."""
    check_file(path)
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, path).load()
    except UnsafeFileError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, IndexError) as e:
        raise CheckpointError(
            f"'{path}' is truncated or corrupt ({type(e).__name__}: {e}); resume from an earlier checkpoint folder."
        ) from e
    if isinstance(obj, dict):
        obj.pop(PADDLE_NAME_TABLE, None)
    return obj


def read_weights(path: str) -> Dict[str, np.ndarray]:
    """A `.pdparams` state dict read safely; a truncated file is a CheckpointError naming it."""
    try:
        return read_pdparams(path)
    except UnsafeFileError:
        raise
    except (EOFError, pickle.UnpicklingError, IndexError) as e:
        raise CheckpointError(
            f"'{path}' is truncated or corrupt ({type(e).__name__}: {e}); pass a complete "
            "checkpoint (save_dir/iter_N or best_model)."
        ) from e


def read_json(path: str) -> Dict[str, Any]:
    """A JSON object; a truncated file is a CheckpointError naming it."""
    check_file(path)
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"'{path}' is truncated or corrupt ({e}); resume from an earlier checkpoint folder."
        ) from e


def describe_model(model_cfg: Optional[Dict[str, Any]]) -> str:
    """One line naming the architecture values of a config's `model` section."""
    if not model_cfg:
        return "unknown"
    bb = model_cfg.get("backbone", {}) or {}
    dec = model_cfg.get("decoder", {}) or {}
    keys = ("embed_dim", "depth", "num_heads", "patch_size", "stem_layers", "img_size", "norm_eps")
    parts = [f"num_classes={model_cfg.get('num_classes')}"] + [f"backbone.{k}={bb[k]}" for k in keys if k in bb]
    return ", ".join(parts + [f"decoder.{k}={v}" for k, v in dec.items() if k not in ("dropout", "drop_path_rate")])


def model_section_of(path: str) -> Optional[Dict[str, Any]]:
    """The resolved `model` section recorded beside a checkpoint's weights (state.json), if any."""
    state = os.path.join(os.path.dirname(os.path.abspath(path)), "state.json")
    if not os.path.isfile(state):
        return None
    try:
        return read_json(state).get("model")
    except CheckpointError:
        return None

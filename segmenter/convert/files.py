"""Reading and writing weight files without ever running code from them.

- `.pdparams` (a pickle written by `paddle.save`) is read by `SafeUnpickler`, which admits numpy arrays and
  plain containers only; Paddle itself is not needed.
- PyTorch files load with `torch.load(weights_only=True)`.
- `.safetensors` and `.npz` (with allow_pickle=False) hold no code by construction.
"""

import json
import os
import pickle
from typing import Any, Dict, Optional, Tuple

import numpy as np

from segmenter.convert.download import fetch_weights, is_url

PADDLE_EXTS = (".pdparams",)
TORCH_EXTS = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_EXTS = (".safetensors",)
NPZ_EXTS = (".npz",)

# (module, name) pairs a Paddle state dict pickle needs: numpy array reconstruction and plain containers.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}
# paddle.save adds this bookkeeping entry (structured name -> parameter name); it holds no weights.
PADDLE_NAME_TABLE = "StructuredToParameterName@@"


class UnsafeFileError(pickle.UnpicklingError):
    """A weights pickle that asks to import something other than arrays and plain containers."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside `_ALLOWED_GLOBALS`, so loading never runs code."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafeFileError(
                f"'{self.source}' asks to load '{module}.{name}', which is not an array or a plain container; "
                f"refusing to unpickle it (it could run code). Re-save the weights as a plain state dict "
                f"(paddle.save(model.state_dict(), path)) or as .safetensors."
            )
        return super().find_class(module, name)


def check_file(path: str) -> None:
    """Raise a FileNotFoundError naming a weights file that is not there."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file '{path}' does not exist; pass a local path or an http(s) URL "
            "(segmenter.convert.files.resolve_weights)."
        )


def resolve_weights(path: str, flag: str = "weights") -> str:
    """The weights file a tool reads for path: an http(s) URL's file in the download cache (fetched the first time,
    see convert/download.py), path itself if a file, a checkpoint folder's model.pdparams (save_dir/best_model,
    save_dir/iter_N). Every tool, both Inferencers and `pretrained:` take weights through this, so they accept the
    same things; anything else is a FileNotFoundError naming path and flag and saying what to pass."""
    if is_url(path):
        return fetch_weights(path)
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{flag} {path} does not exist; pass a weights file (.pdparams, .pth, .safetensors), an http(s) URL "
            "of one, or a checkpoint folder (save_dir/best_model, save_dir/iter_N)."
        )
    inside = os.path.join(path, "model.pdparams")
    if os.path.isfile(inside):
        return inside
    found = sorted(n for n in os.listdir(path) if n == "best_model" or n.startswith("iter_"))
    hint = f" It is a training's save_dir: pass {os.path.join(path, found[0])}." if found else ""
    raise FileNotFoundError(
        f"{flag} {path} is a folder without model.pdparams; pass a weights file or a checkpoint "
        f"folder (save_dir/best_model, save_dir/iter_N).{hint}"
    )


def extension(path: str) -> str:
    """Lower-case extension including the dot."""
    return os.path.splitext(path)[1].lower()


def read_pdparams(path: str) -> Dict[str, np.ndarray]:
    """A Paddle `.pdparams` state dict as {key: array}, read without Paddle and without running code."""
    check_file(path)
    with open(path, "rb") as f:
        obj = SafeUnpickler(f, path).load()
    if not isinstance(obj, dict):
        raise ValueError(f"'{path}' holds a {type(obj).__name__}, not a state dict {{name: array}}.")
    obj = {k: v for k, v in obj.items() if k != PADDLE_NAME_TABLE}
    bad = sorted(k for k, v in obj.items() if not isinstance(v, np.ndarray))
    if bad:
        raise ValueError(
            f"'{path}' has entries that are not arrays: {bad[:10]}; it is not a state dict "
            f"(an optimizer .pdopt file?). Pass the model's .pdparams."
        )
    return obj


def write_pdparams(state: Dict[str, np.ndarray], path: str) -> None:
    """Write {key: array} the way paddle.save stores a state dict (a protocol-4 pickle of arrays)."""
    with open(path, "wb") as f:
        pickle.dump({k: np.ascontiguousarray(v) for k, v in state.items()}, f, protocol=4)


def _torch():
    try:
        import torch
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("reading or writing PyTorch weight files needs torch: pip install torch") from e
    return torch


def read_torch(path: str) -> Dict[str, Any]:
    """A PyTorch file loaded with weights_only=True (tensors become arrays; other values are kept)."""
    check_file(path)
    torch = _torch()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeFileError(
            f"'{path}' holds objects other than tensors and plain containers, so it was not "
            f"loaded (weights_only=True): {str(e).splitlines()[0]}"
        ) from e
    return _tensors_to_numpy(obj)


def _tensors_to_numpy(obj: Any) -> Any:
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: _tensors_to_numpy(v) for k, v in obj.items()}
    return obj


def write_torch(state: Dict[str, np.ndarray], path: str) -> None:
    """Write {key: array} as a PyTorch state dict of tensors."""
    torch = _torch()
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, path)


def write_torch_checkpoint(state: Dict[str, np.ndarray], path: str, meta: Dict[str, Any]) -> None:
    """Write {key: array} as MMEngine does: {"meta": meta, "state_dict": tensors}."""
    torch = _torch()
    torch.save(
        {"meta": meta, "state_dict": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}}, path
    )


def read_safetensors(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """({key: array}, metadata) of a .safetensors file."""
    check_file(path)
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
    return load_file(path), dict(meta)


def write_safetensors(state: Dict[str, np.ndarray], path: str, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write {key: array} as .safetensors with string metadata."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, path, metadata=metadata)


def read_npz(path: str) -> Dict[str, np.ndarray]:
    """An .npz archive as {key: array}; object arrays (pickles) are refused."""
    check_file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        raise UnsafeFileError(f"'{path}' contains pickled object arrays; refusing to load them: {e}") from e


def atomic_write(write, state: Dict[str, np.ndarray], path: str, **kwargs) -> None:
    """Write to a temporary name beside `path`, then rename: a failed write leaves nothing behind."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".partial"
    try:
        write(state, tmp, **kwargs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


MODEL_CARD_SUFFIX = ".model.json"  # beside a weights file: the `model` section it was built as


def write_model_card(weights_path: str, model: Dict[str, Any]) -> str:
    """Write <weights>.model.json holding the resolved `model` config section, so no reader has to guess the
    architecture (heads, LayerNorm eps, pos-embed interpolation) from the weights; returns its path."""
    path = weights_path + MODEL_CARD_SUFFIX
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump({"model": model}, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_model_card(weights_path: str) -> Dict[str, Any]:
    """The `model` section recorded for a weights file: its <weights>.model.json, else the state.json of the
    training checkpoint folder it sits in; {} when neither exists (a foreign file)."""
    card = weights_path + MODEL_CARD_SUFFIX
    state = os.path.join(os.path.dirname(os.path.abspath(weights_path)), "state.json")
    for path in (card, state):
        if os.path.isfile(path):
            with open(path) as f:
                return (json.load(f) or {}).get("model") or {}
    return {}

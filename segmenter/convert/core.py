"""The shared pipeline: any supported file -> detect its family -> rename by the family's table -> check against the
architecture the weights encode -> write any of our formats (and a config).

Canonical = our Paddle Segmenter's state dict (`backbone.*`, `decoder.*`, Linear weights [in, out]). Every source
key must be renamed or dropped on purpose, every key the architecture needs must be produced, and every shape must
match; otherwise `ConversionError` lists the keys and nothing is written. The families are rows of the registry
(`convert/families/`): this file knows none of them by name except our own output formats.
"""

import json
import os
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from segmenter.convert import files
from segmenter.convert.arch import Arch, expected_shapes, infer_arch, model_config
from segmenter.convert.config import base_model_facts, config_text, default_base_config
from segmenter.convert.families import FAMILIES, FORMATS
from segmenter.convert.families.mmseg import to_mmseg
from segmenter.convert.families.ours import SAFETENSORS_LAYOUT, recorded_overrides
from segmenter.convert.family import ConversionError, Converted, table_rename
from segmenter.convert.keydiff import diff_keys, diff_report
from segmenter.convert.layout import is_linear_weight, strip_prefix, to_layout

__all__ = [
    "FORMATS",
    "ConversionError",
    "Converted",
    "check_complete",
    "convert",
    "detect_format",
    "is_linear_weight",
    "load_weights",
    "read_raw",
    "save_weights",
    "strip_prefix",
    "to_canonical",
    "to_layout",
    "to_mmseg",
]

DEST_FORMATS = {
    **{e: "paddle" for e in files.PADDLE_EXTS},
    ".pth": "torch",
    ".pt": "torch",
    **{e: "safetensors" for e in files.SAFETENSORS_EXTS},
}


def _given(overrides: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    return {k: v for k, v in (overrides or {}).items() if v is not None}


def detect_format(path: str, keys: Sequence[str], meta: Optional[Dict[str, str]] = None) -> str:
    """Recognise a file's family from its extension and its keys: the first registry row whose rule matches."""
    ext = files.extension(path)
    for name, family in FAMILIES.items():
        if family.detect(ext, keys, meta or {}):
            return name
    raise ConversionError(
        f"cannot recognise the format of '{path}' (extension '{ext}', first keys "
        f"{sorted(keys)[:8]}); pass --from with one of {FORMATS}."
    )


def _unwrap(obj: Any, source: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(state dict, other top-level entries) of a loaded PyTorch file."""
    if not isinstance(obj, dict):
        raise ConversionError(f"'{source}' holds a {type(obj).__name__}, not a state dict.")
    for wrapper in ("model", "state_dict"):
        if isinstance(obj.get(wrapper), dict):
            return obj[wrapper], {k: v for k, v in obj.items() if k != wrapper}
    return obj, {}


def read_raw(path: str) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, str]]:
    """(state dict as stored, other top-level entries, safetensors metadata) of any supported file."""
    ext = files.extension(path)
    if ext in files.PADDLE_EXTS:
        return files.read_pdparams(path), {}, {}
    if ext in files.SAFETENSORS_EXTS:
        state, meta = files.read_safetensors(path)
        return state, {}, meta
    if ext in files.NPZ_EXTS:
        return files.read_npz(path), {}, {}
    if ext in files.TORCH_EXTS:
        state, extra = _unwrap(files.read_torch(path), path)
        return state, extra, {}
    raise ConversionError(
        f"'{path}': unknown extension '{ext}'; supported: "
        f"{files.PADDLE_EXTS + files.TORCH_EXTS + files.SAFETENSORS_EXTS + files.NPZ_EXTS}."
    )


def check_complete(state: Mapping[str, np.ndarray], arch: Arch, source: str) -> None:
    """Every key the architecture needs is present with its shape, and nothing else."""
    _, missing, extra, bad = diff_keys(expected_shapes(arch), state)
    error = diff_report(
        f"'{source}' does not hold a complete {arch.depth}-block ViT-{arch.embed_dim}"
        f"{' + ' + arch.decoder['name'] if arch.decoder else ''}:",
        missing,
        extra,
        bad,
        ("not produced", "not part of the model", "shape mismatch"),
    )
    if error:
        raise ConversionError(error)


def load_weights(path: str, fmt: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> Converted:
    """Read any supported weights file into canonical arrays, strictly, with the architecture it encodes."""
    path = files.resolve_weights(path)
    raw, _, meta = read_raw(path)
    return to_canonical(raw, fmt or detect_format(path, list(raw), meta), path, meta, overrides)


def to_canonical(
    raw: Mapping[str, Any],
    fmt: str,
    path: str,
    meta: Optional[Dict[str, str]] = None,
    overrides: Optional[Dict[str, Any]] = None,
) -> Converted:
    """Detected family -> rename by its table -> check against the architecture the weights encode.

    What the weights cannot tell comes, weakest first, from the family's defaults and `overrides`, what the
    content shows (npz heads), what is recorded beside or inside the file (`facts`), and the caller's overrides."""
    meta = meta or {}
    if fmt not in FAMILIES:
        raise ConversionError(f"unknown format {fmt!r}; use one of {FORMATS}.")
    family = FAMILIES[fmt]
    state, dropped, found = family.rename(raw, path) if family.rename else table_rename(family, raw, path)
    if family.torch_layout:
        state = to_layout(state, "paddle", "torch")
    facts = family.facts(path, meta) if family.facts else {}
    o = {**family.overrides, **found, **_given(facts), **_given(overrides)}
    if family.finish:
        state = family.finish(state, o, path)
    state = {k: v.astype(np.float32) if v.dtype != np.float32 else v for k, v in state.items()}
    arch = infer_arch(state, path, family.norm_eps, family.pos_embed_interp, o)
    check_complete(state, arch, path)
    return Converted(state=state, arch=arch, fmt=fmt, source=path, dropped=dropped)


def save_weights(conv: Converted, path: str, layout: Optional[str] = None) -> str:
    """Write canonical weights as our Paddle (.pdparams), PyTorch (.pth) or .safetensors file; returns the format."""
    ext = files.extension(path)
    if ext not in DEST_FORMATS:
        raise ConversionError(f"'{path}': destination extension '{ext}' is not one of {sorted(DEST_FORMATS)}.")
    fmt = DEST_FORMATS[ext]
    if layout == "mmseg":
        if fmt != "torch":
            raise ConversionError(f"'{path}': MMSeg checkpoints are PyTorch files; name the destination .pth.")
        files.atomic_write(
            files.write_torch_checkpoint,
            to_mmseg(conv),
            path,
            meta={"converted_by": "segmenter tools/convert.py", "source": os.path.abspath(conv.source)},
        )
        return "mmseg"
    if fmt in ("paddle", "torch"):  # these formats hold arrays only: the architecture goes beside them
        if fmt == "paddle":
            files.atomic_write(files.write_pdparams, conv.state, path)
        else:
            files.atomic_write(files.write_torch, to_layout(conv.state, "torch"), path)
        files.write_model_card(path, model_config(conv.arch, None))
    else:
        meta = {"format": "pt", "layout": SAFETENSORS_LAYOUT, "arch": json.dumps(conv.arch.to_json())}
        files.atomic_write(files.write_safetensors, to_layout(conv.state, "torch"), path, metadata=meta)
    return fmt


def convert(
    src: str,
    dst: str,
    fmt: Optional[str] = None,
    overrides: Optional[Dict[str, Any]] = None,
    save_config: Optional[str] = None,
    base_config: Optional[str] = None,
    num_classes: Optional[int] = None,
    to: Optional[str] = None,
) -> Converted:
    """Convert `src` (any family) to `dst` (format from its extension, or `to="mmseg"` for MMSeg's layout in a
    .pth); optionally write a config for it."""
    src = files.resolve_weights(src, "SRC")  # a checkpoint folder: its model.pdparams, beside its state.json
    conv = load_weights(src, fmt, overrides)
    if num_classes is not None and conv.arch.num_classes not in (None, num_classes):
        raise ConversionError(
            f"--num-classes {num_classes} disagrees with the {conv.arch.num_classes} classes "
            f"of '{src}'; drop the flag or pass the right file."
        )
    if files.extension(dst) not in DEST_FORMATS:
        raise ConversionError(f"'{dst}': destination extension is not one of {sorted(DEST_FORMATS)}.")
    if save_config and conv.fmt in ("paddle", "torch"):  # a config would state guesses as facts
        given = {**recorded_overrides(src), **_given(overrides)}
        base = os.path.abspath(base_config or default_base_config())
        facts = (
            {k: v for k, v in base_model_facts(base, conv.arch).items() if given.get(k) is None}
            if os.path.isfile(base)
            else {}
        )
        if facts:  # the base config's model section states what the weights cannot tell: build that model
            conv = load_weights(src, fmt, {**(overrides or {}), **facts})
        unknown = ("num_heads", "norm_eps", "pos_embed_interp") + (
            ("decoder_heads",) if conv.arch.decoder and conv.arch.decoder["name"] == "mask_transformer" else ()
        )
        guessed = [k for k in unknown if {**given, **facts}.get(k) is None]
        if guessed:
            family = FAMILIES[conv.fmt]
            warnings.warn(
                f"'{src}' has neither a .model.json nor a state.json beside it, and no base config model "
                f"section of these weights' shapes states {guessed}, so they are assumed (heads = width "
                f"// 64, eps {family.norm_eps}, {family.pos_embed_interp}); pass "
                f"--num-heads / --decoder-heads / --norm-eps / --pos-embed-interp if the model was built "
                f"otherwise, --base-config with the config it was trained from, or convert the checkpoint "
                f"folder's own model.pdparams.",
                stacklevel=2,
            )
    text = config_text(conv, dst, base_config, num_classes) if save_config else None  # checked before writing
    save_weights(conv, dst, to)
    if text is not None:
        os.makedirs(os.path.dirname(os.path.abspath(save_config)), exist_ok=True)
        with open(save_config, "w") as f:
            f.write(text)
    return conv

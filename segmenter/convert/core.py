"""Strict application of the key-map tables: any supported file -> canonical weights -> any of our formats.

Canonical = our Paddle Segmenter's state dict (`backbone.*`, `decoder.*`, Linear weights [in, out]).
Every source key must be renamed or dropped on purpose, every key the architecture needs must be produced,
and every shape must match; otherwise `ConversionError` lists the keys and nothing is written.
"""

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from segmenter.convert import files
from segmenter.convert.arch import Arch, expected_shapes, infer_arch, model_config, token_stride
from segmenter.convert.keydiff import diff_keys, diff_report
from segmenter.convert.keymaps import (
    LINEAR_WEIGHTS,
    MMSEG_RESHAPES,
    MMSEG_UPERNET,
    NPZ,
    NPZ_DROP,
    NPZ_OPTIMIZER_PREFIX,
    NPZ_RESNET,
    NPZ_STEM,
    TABLES,
    TO_MMSEG_RESHAPES,
    TO_MMSEG_SEGMENTER,
    TO_MMSEG_UPERNET,
    TORCH_BN_BUFFERS,
    TORCH_BN_COUNTER,
    Rename,
)

FORMATS = ("paddle", "torch", "safetensors", "official", "paddleseg", "timm", "npz", "mmseg", "mmseg0", "mmpretrain")
# Which files store Linear weights [out, in] (PyTorch) rather than [in, out] (Paddle, Flax).
TORCH_LAYOUT = {"torch", "safetensors", "official", "timm", "mmseg", "mmseg0", "mmpretrain"}
# (norm_eps, pos_embed_interp) each family trained with; weights cannot tell, so they are stated here.
FAMILY_DEFAULTS: Dict[str, Tuple[float, str]] = {
    "paddle": (1e-5, "bilinear"),
    "torch": (1e-5, "bilinear"),
    "safetensors": (1e-5, "bilinear"),
    "official": (1e-5, "bilinear"),
    "paddleseg": (1e-5, "bicubic"),
    "timm": (1e-6, "bicubic_antialias"),
    "npz": (1e-6, "bilinear"),
    "mmseg": (1e-6, "bicubic"),
    "mmseg0": (1e-6, "bicubic"),
    "mmpretrain": (1e-6, "bicubic"),
}
# What else a family's models do that weights cannot tell: MMSeg's heads use LayerNorm eps 1e-5 (its backbone
# 1e-6) and resize the logits of the padded grid straight to the input size.
# MMSeg v0.13/v0.14's UPerNet ViT configs (PR #520, before its merge): one map (block 11) into a MultiLevelNeck that
# rescales it by [0.5, 1, 2, 4], coarsest first, and the FCN auxiliary head on map 0 (the coarsest); its patch conv
# has no padding, so pixels past the last whole patch are dropped.
FAMILY_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "mmseg": {"decoder_norm_eps": 1e-5, "logits_resize": "stretch"},
    "mmseg0": {"neck_scales": [0.5, 1, 2, 4], "aux_in_index": 0, "patch_remainder": "drop"},
}
DEST_FORMATS = {
    **{e: "paddle" for e in files.PADDLE_EXTS},
    ".pth": "torch",
    ".pt": "torch",
    **{e: "safetensors" for e in files.SAFETENSORS_EXTS},
}
SAFETENSORS_LAYOUT = "segmenter-torch"  # metadata tag of our .safetensors (PyTorch layout)
# Flax -> canonical reshapes named in keymaps.NPZ.
# Reshapes named in keymaps.MMSEG_RESHAPES.
RESHAPES = {
    "transpose": lambda v: np.ascontiguousarray(v.T),
    "squeeze_1x1": lambda v: v.reshape(v.shape[0], v.shape[1]),  # [K, D, 1, 1] -> [K, D]
    "unsqueeze_1x1": lambda v: v.reshape(v.shape[0], v.shape[1], 1, 1),  # [K, D] -> [K, D, 1, 1]
}
NPZ_RESHAPES = {
    "none": lambda v: v,
    "hwio_to_oihw": lambda v: v.transpose(3, 2, 0, 1),  # [p, p, C, D] -> [D, C, p, p]
    "heads_in": lambda v: v.reshape(v.shape[0], -1),  # [D, heads, hd] -> [D, D]  ([in, out])
    "flatten": lambda v: v.reshape(-1),  # [heads, hd] -> [D]
    "heads_out": lambda v: v.reshape(-1, v.shape[-1]),  # [heads, hd, D] -> [D, D]  ([in, out])
}


class ConversionError(ValueError):
    """Source keys left unused, target keys not produced, or shapes that do not match."""


@dataclass
class Converted:
    """Canonical weights plus what is known about them."""

    state: Dict[str, np.ndarray]
    arch: Arch
    fmt: str
    source: str
    dropped: List[str] = field(default_factory=list)


def is_linear_weight(key: str) -> bool:
    """True for canonical keys that transpose between Paddle and PyTorch (the explicit LINEAR_WEIGHTS table)."""
    return any(re.fullmatch(p, key) for p in LINEAR_WEIGHTS)


def _rename_bn(key: str, to_torch: bool) -> str:
    """A BatchNorm statistic's name in the other framework (TORCH_BN_BUFFERS); other keys unchanged."""
    pairs = TORCH_BN_BUFFERS.items() if to_torch else ((t, p) for p, t in TORCH_BN_BUFFERS.items())
    for src, dst in pairs:
        if key.endswith(src):
            return key[: -len(src)] + dst
    return key


def to_layout(state: Mapping[str, np.ndarray], layout: str, source_layout: str = "paddle") -> Dict[str, np.ndarray]:
    """Paddle layout <-> PyTorch layout of canonical keys: transpose exactly the LINEAR_WEIGHTS keys, and give
    BatchNorm statistics the other framework's names (PyTorch also counts batches: 0 going there, dropped back)."""
    if layout not in ("paddle", "torch") or source_layout not in ("paddle", "torch"):
        raise ValueError(f"layouts are 'paddle' or 'torch', got {layout!r} from {source_layout!r}")
    if layout == source_layout:
        return dict(state)
    to_torch = layout == "torch"
    out = {}
    for k, v in state.items():
        if not to_torch and re.fullmatch(TORCH_BN_COUNTER, k):
            continue
        out[_rename_bn(k, to_torch)] = np.ascontiguousarray(v.T) if is_linear_weight(k) else v
        if to_torch and k.endswith(".bn._mean"):
            out[k[: -len("_mean")] + "num_batches_tracked"] = np.zeros((), dtype=np.int64)
    return out


def strip_prefix(state: Mapping[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    """Keys under `prefix`, with it removed (e.g. the backbone part of whole-model weights)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def apply_table(
    raw: Mapping[str, Any], renames: Sequence[Rename], drops: Sequence[str], source: str, fmt: str
) -> Tuple[Dict[str, Any], List[str]]:
    """Rename every key of `raw` by the first matching rule; keys matching `drops` are left out on purpose."""
    out, dropped, unused, clashes = {}, [], [], []
    for key, value in raw.items():
        if any(re.fullmatch(d, key) for d in drops):
            dropped.append(key)
            continue
        for pattern, template in renames:
            m = re.fullmatch(pattern, key)
            if m:
                target = m.expand(template)
                if target in out:
                    clashes.append(f"{key} -> {target}")
                out[target] = value
                break
        else:
            unused.append(key)
    if unused or clashes:
        lines = [f"'{source}' ({fmt} layout) cannot be converted:"]
        if unused:
            lines.append(f"  keys no rule maps ({len(unused)}): {sorted(unused)[:20]}")
        if clashes:
            lines.append(f"  keys mapped twice: {clashes[:20]}")
        lines.append(f"  If the file is another family, pass --from (one of {FORMATS}).")
        raise ConversionError("\n".join(lines))
    return out, dropped


def _zero_based(key: str) -> str:
    """`{N-1}` in a key made by keymaps.NPZ_RESNET (Google's 1-based block / unit number N) -> N - 1."""
    return re.sub(r"\{(\d+)-1\}", lambda m: str(int(m.group(1)) - 1), key)


def _npz_to_canonical(
    raw: Mapping[str, np.ndarray], source: str
) -> Tuple[Dict[str, np.ndarray], List[str], Dict[str, Any]]:
    dropped = []
    if any(k.startswith(NPZ_OPTIMIZER_PREFIX) for k in raw):  # saved with optimizer state: keep the weights
        dropped = [k for k in raw if not k.startswith(NPZ_OPTIMIZER_PREFIX)]
        raw = {k[len(NPZ_OPTIMIZER_PREFIX) :]: v for k, v in raw.items() if k.startswith(NPZ_OPTIMIZER_PREFIX)}
    # A hybrid's ResNet (R50 / R26 stages, or the stem alone when there is no block1/).
    table = NPZ + (NPZ_RESNET if "block1/unit1/conv1/kernel" in raw else NPZ_STEM if "conv_root/kernel" in raw else [])
    renames = [(p, t) for p, t, _ in table]
    mapped, dropped_here = apply_table(raw, renames, NPZ_DROP, source, "npz")
    mapped = {_zero_based(k): v for k, v in mapped.items()}
    reshape_of = {}
    for key in raw:
        for p, t, how in table:
            m = re.fullmatch(p, key)
            if m:
                reshape_of[_zero_based(m.expand(t))] = how
                break
    state = {k: NPZ_RESHAPES[reshape_of[k]](np.asarray(v)) for k, v in mapped.items()}
    heads = None
    # Flax keeps query, key and value apart: concatenate them into the fused qkv ([in, 3 * out]).
    for i in sorted(
        {int(m.group(1)) for k in state for m in [re.match(r"backbone\.blocks\.(\d+)\.attn\.query", k)] if m}
    ):
        base = f"backbone.blocks.{i}.attn."
        for suffix, axis in (("weight", 1), ("bias", 0)):
            parts = [base + f"{n}.{suffix}" for n in ("query", "key", "value")]
            missing = [p for p in parts if p not in state]
            if missing:
                raise ConversionError(f"'{source}': block {i} lacks {missing}; the .npz is incomplete.")
            state[base + f"qkv.{suffix}"] = np.concatenate([state.pop(p) for p in parts], axis=axis)
        heads = heads or int(raw[f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/query/kernel"].shape[1])
    return state, dropped + dropped_here, {"num_heads": heads}


def _unwrap(obj: Any, source: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(state dict, other top-level entries) of a loaded PyTorch file."""
    if not isinstance(obj, dict):
        raise ConversionError(f"'{source}' holds a {type(obj).__name__}, not a state dict.")
    for wrapper in ("model", "state_dict"):
        if isinstance(obj.get(wrapper), dict):
            return obj[wrapper], {k: v for k, v in obj.items() if k != wrapper}
    return obj, {}


def reshape_for(key: str, value: np.ndarray, table: Mapping[str, str]) -> np.ndarray:
    """`value` reshaped as the first `table` pattern matching `key` says (RESHAPES), else unchanged."""
    for pattern, how in table.items():
        if re.fullmatch(pattern, key):
            return RESHAPES[how](value)
    return value


def _no_class_pos_row(
    state: Dict[str, np.ndarray], overrides: Mapping[str, Any], path: str = "", warn: bool = True
) -> bool:
    """Whether pos_embed [1, N, D] covers the patches only (DeiT-III: the class token gets no position).

    With --img-size (here img_size, [H, W]) the grid is known and N says which kind the file is. Without it, N alone
    is ambiguous (a square N is also 1 + a (k-1) x (k+1) grid), so only a file with layer scale (every timm DeiT-III
    has it) and a square N is taken for DeiT-III, with a warning naming the assumption."""
    pos, conv = state.get("backbone.pos_embed"), state.get("backbone.patch_embed.proj.weight")
    if pos is None or conv is None:
        return False
    n, p = int(pos.shape[1]), token_stride(state)
    size = overrides.get("img_size")
    if size:
        return n == (size[0] // p) * (size[1] // p)
    if math.isqrt(n) ** 2 != n or "backbone.blocks.0.ls1.gamma" not in state:
        return False
    side = math.isqrt(n)
    if warn:
        warnings.warn(
            f"'{path}': pos_embed has {n} rows and the blocks have layer scale, so it is read as timm's "
            f"DeiT-III layout (no class-token row, a {side}x{side} grid). If it is a ViT with a class-token "
            f"row on a grid {side + 1} wide and {side - 1} high, pass --img-size {(side + 1) * p} {(side - 1) * p}.",
            stacklevel=2,
        )
    return True


def _prefix_pos_rows(state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """timm's `no_embed_class` ViTs (DeiT-III) add pos_embed before prepending the class (and distillation) token;
    ours adds positions after, so a zero row per prefix token gives the same sums exactly, at any input size (only
    the grid rows are resampled)."""
    pos = state["backbone.pos_embed"]
    prefix = 2 if "backbone.dist_token" in state else 1
    zeros = np.zeros((1, prefix, pos.shape[2]), dtype=pos.dtype)
    return {**state, "backbone.pos_embed": np.concatenate([zeros, pos], axis=1)}  # [1, prefix + N, D]


def _has(keys, *prefixes: str) -> bool:
    return any(k.startswith(prefixes) for k in keys)


def detect_format(path: str, keys: Sequence[str], meta: Optional[Dict[str, str]] = None) -> str:
    """Recognise a file's family from its extension and its keys."""
    ext = files.extension(path)
    meta = meta or {}
    bare = _has(keys, "cls_token", "blocks.", "patch_embed.")
    if ext in files.NPZ_EXTS:
        return "npz"
    if ext in files.PADDLE_EXTS:
        if _has(keys, "head.") and _has(keys, "backbone."):
            return "paddleseg"
        if _has(keys, "backbone.", "decoder.") or bare:
            return "paddle"
    if ext in files.SAFETENSORS_EXTS:
        if meta.get("layout") == SAFETENSORS_LAYOUT or _has(keys, "backbone.", "decoder."):
            return "safetensors"
        if bare:
            return "timm"
    if ext in files.TORCH_EXTS:
        if _has(keys, "backbone.blocks.") and any(re.match(r"decode_head\.psp_modules\.\d+\.1\.", k) for k in keys):
            return "mmseg0"  # MMSeg v0.13/v0.14: timm-style ViT blocks, MMSeg's PPM Sequential (ours has no `.1.`)
        if _has(keys, "backbone.layers."):  # MMSeg / mmpretrain: nn.MultiheadAttention (MMSeg) vs fused qkv
            return "mmseg" if _has(keys, "decode_head.", "backbone.layers.0.attn.attn.") else "mmpretrain"
        if _has(keys, "encoder."):
            return "official"
        if _has(keys, "backbone.", "decoder."):
            return "torch"
        if bare:
            return "timm"
    raise ConversionError(
        f"cannot recognise the format of '{path}' (extension '{ext}', first keys "
        f"{sorted(keys)[:8]}); pass --from with one of {FORMATS}."
    )


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


def _official_overrides(path: str) -> Dict[str, Any]:
    """Architecture facts from the official `variant.yml` beside the checkpoint, when present."""
    variant = os.path.join(os.path.dirname(os.path.abspath(path)), "variant.yml")
    if not os.path.isfile(variant):
        return {}
    import yaml

    with open(variant) as f:
        net = (yaml.safe_load(f) or {}).get("net_kwargs", {})
    o = {"num_heads": net.get("n_heads")}
    if net.get("image_size") is not None:
        size = net["image_size"]
        o["img_size"] = [size, size] if isinstance(size, int) else list(size)
    return o


def _recorded_overrides(path: str) -> Dict[str, Any]:
    """Architecture facts our files record beside their weights (<file>.model.json, or a training checkpoint's
    state.json): what the weights cannot tell (heads, LayerNorm eps, pos-embed interpolation, training size)."""
    model = files.read_model_card(path)
    if not model:
        return {}
    bb, dec = model.get("backbone") or {}, model.get("decoder") or {}
    size = bb.get("img_size")
    return {
        "img_size": [size, size] if isinstance(size, int) else size,
        "num_heads": bb.get("num_heads"),
        "norm_eps": bb.get("norm_eps"),
        "pos_embed_interp": bb.get("pos_embed_interp"),
        "layer_scale_init": bb.get("layer_scale_init"),
        "patch_remainder": bb.get("patch_remainder"),
        "decoder_heads": dec.get("n_heads"),
        "decoder_norm_eps": dec.get("norm_eps"),
        # UPerNetViT: which maps, rescaled how, and where the auxiliary head reads (MMSeg v0.x differs from 1.x)
        "out_indices": bb.get("out_indices"),
        "neck_scales": (model.get("neck") or {}).get("scales"),
        "pool_scales": (model.get("decode_head") or {}).get("pool_scales"),
        "aux_in_index": (model.get("auxiliary_head") or {}).get("in_index"),
    }


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
    fmt = fmt or detect_format(path, list(raw), meta)
    if fmt in ("paddle", "torch"):  # our files record the model they were built as: read it, never guess
        overrides = {**_recorded_overrides(path), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return to_canonical(raw, fmt, path, meta, overrides)


def to_canonical(
    raw: Mapping[str, Any],
    fmt: str,
    path: str,
    meta: Optional[Dict[str, str]] = None,
    overrides: Optional[Dict[str, Any]] = None,
) -> Converted:
    """Detected family -> rename by its table -> check against the architecture the weights encode."""
    meta = meta or {}
    if fmt not in FORMATS:
        raise ConversionError(f"unknown format {fmt!r}; use one of {FORMATS}.")
    o = dict(overrides or {})
    if fmt == "npz":
        state, dropped, found = _npz_to_canonical(raw, path)
        o = {**found, **{k: v for k, v in o.items() if v is not None}}
    else:
        renames, drops = TABLES[fmt]
        if fmt == "mmseg" and _has(raw, "decode_head.psp_modules."):
            renames = MMSEG_UPERNET
        state, dropped = apply_table(raw, renames, drops, path, fmt)
        state = {k: np.asarray(v) for k, v in state.items()}
        if fmt == "mmseg":
            state = {k: reshape_for(k, v, MMSEG_RESHAPES) for k, v in state.items()}
        o = {**FAMILY_OVERRIDES.get(fmt, {}), **{k: v for k, v in o.items() if v is not None}}
        if fmt in TORCH_LAYOUT:
            state = to_layout(state, "paddle", "torch")
        if fmt == "official":
            o = {**_official_overrides(path), **{k: v for k, v in o.items() if v is not None}}
        if fmt == "timm" and _no_class_pos_row(state, o, path):
            state = _prefix_pos_rows(state)
        if fmt == "mmpretrain" and _no_class_pos_row(state, o, path, warn=False):
            raise ConversionError(
                f"'{path}' is mmpretrain's DeiT3 (no position row for the class token). mmpretrain 1.2.0's DeiT3 "
                "layer normalises the MLP input with ln1 and never uses ln2 (deit3.py: `self.ffn(self.ln1(x), ...)`), "
                "so no conversion is both the trained DeiT-III and mmpretrain's forward; convert timm's deit3_* "
                "weights of the same model instead."
            )
    if fmt in ("safetensors",) and meta.get("arch"):
        saved = json.loads(meta["arch"])
        o = {
            **{
                k: saved.get(k)
                for k in (
                    "img_size",
                    "num_heads",
                    "norm_eps",
                    "pos_embed_interp",
                    "out_indices",
                    "logits_resize",
                    "layer_scale_init",
                    "patch_remainder",
                )
            },
            "neck_scales": (saved.get("neck") or {}).get("scales"),
            "pool_scales": (saved.get("decode_head") or {}).get("pool_scales"),
            "aux_in_index": (saved.get("auxiliary_head") or {}).get("in_index"),
            "decoder_heads": (saved.get("decoder") or {}).get("n_heads"),
            "decoder_norm_eps": (saved.get("decoder") or {}).get("norm_eps"),
            **{k: v for k, v in o.items() if v is not None},
        }
    eps, interp = FAMILY_DEFAULTS[fmt]
    state = {k: v.astype(np.float32) if v.dtype != np.float32 else v for k, v in state.items()}
    arch = infer_arch(state, path, eps, interp, o)
    check_complete(state, arch, path)
    return Converted(state=state, arch=arch, fmt=fmt, source=path, dropped=dropped)


def to_mmseg(conv: Converted) -> Dict[str, np.ndarray]:
    """Canonical weights in MMSeg's layout (PyTorch arrays), by the TO_MMSEG tables, strictly."""
    if conv.arch.decode_head is None and conv.arch.decoder is None:
        raise ConversionError(f"'{conv.source}' holds a backbone only; MMSeg checkpoints are whole models.")
    if conv.arch.layer_scale_init is not None:
        raise ConversionError(
            f"'{conv.source}' has LayerScale (backbone.blocks.*.ls1/ls2.gamma) and MMSeg's "
            f"VisionTransformer has none, so MMSeg could not load it; keep it in our formats "
            f"(.pdparams, .pth, .safetensors)."
        )
    if conv.arch.patch_remainder == "drop":
        warnings.warn(
            f"'{conv.source}' is MMSeg v0.13's model (patch_remainder: drop); MMSeg 1.x's ViT pads sides "
            f"that are not a multiple of {conv.arch.patch_size} instead, so its outputs there differ. "
            f"Build it in MMSeg 1.x with out_indices={conv.arch.out_indices}, patch_bias=True and "
            f"MultiLevelNeck scales {(conv.arch.neck or {}).get('scales')}.",
            stacklevel=2,
        )
    table = TO_MMSEG_UPERNET if conv.arch.decode_head else TO_MMSEG_SEGMENTER
    state, _ = apply_table(to_layout(conv.state, "torch"), table, (), conv.source, "canonical")
    return {k: reshape_for(k, v, TO_MMSEG_RESHAPES if conv.arch.decoder else {}) for k, v in state.items()}


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


def default_base_config() -> str:
    """The shipped ADE20K dataset base of this checkout."""
    return os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "_base_", "ade20k.yml"
    )


# Classes of a decoder built on backbone-only weights when neither --num-classes nor the base config says.
DEFAULT_CLASSES = 150  # ADE20K's
# NUM_CLASSES of the PaddleSeg datasets our shipped bases use (PaddleSeg checks model.num_classes against it).
DATASET_CLASSES = {"ADE20K": 150, "Cityscapes": 19, "PascalContext": 60}


def _dataset_classes(base: str) -> Optional[int]:
    """Class count of a dataset config's train_dataset, when it says or its type is a known dataset."""
    import yaml

    with open(base) as f:
        data = (yaml.safe_load(f) or {}).get("train_dataset") or {}
    return data.get("num_classes", DATASET_CLASSES.get(data.get("type")))


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _resolved_yaml(path: str) -> Dict[str, Any]:
    """A config with its `_base_` files merged under it, as PaddleSeg reads it (without importing paddle)."""
    import yaml

    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    bases = cfg.pop("_base_", [])
    merged: Dict[str, Any] = {}
    for b in [bases] if isinstance(bases, str) else bases:
        merged = _merge(merged, _resolved_yaml(os.path.join(os.path.dirname(path), b)))
    return _merge(merged, cfg)


# Backbone keys a base config's model section must state as the weights show them before its other values (heads,
# eps, pos-embed interpolation, layer scale init) are taken for these weights.
SHOWN_BY_WEIGHTS = ("embed_dim", "depth", "patch_size")
ALSO_COMPARED = ("in_channels", "mlp_ratio", "qkv_bias", "distilled")


def base_model_facts(base: str, arch: Arch) -> Dict[str, Any]:
    """What the weights cannot tell, as the base config's model section states it, when that section describes
    these weights (the same width, depth, patch and decoder); {} otherwise."""
    model = _resolved_yaml(base).get("model") or {}
    bb, dec = model.get("backbone") or {}, model.get("decoder") or {}
    if any(bb.get(k) != getattr(arch, k) for k in SHOWN_BY_WEIGHTS) or any(
        k in bb and bb[k] != getattr(arch, k) for k in ALSO_COMPARED
    ):
        return {}
    facts = {
        "num_heads": bb.get("num_heads"),
        "norm_eps": bb.get("norm_eps"),
        "pos_embed_interp": bb.get("pos_embed_interp"),
        "layer_scale_init": bb.get("layer_scale_init"),
    }
    if arch.decoder and arch.decoder["name"] == "mask_transformer":
        if dec.get("name") != "mask_transformer" or any(
            k in dec and dec[k] != arch.decoder[k] for k in ("d_model", "n_layers", "mlp_ratio", "qkv_bias")
        ):
            return {}
        facts.update({"decoder_heads": dec.get("n_heads"), "decoder_norm_eps": dec.get("norm_eps")})
    return {k: v for k, v in facts.items() if v is not None}


def config_text(
    conv: Converted, weights: str, base_config: Optional[str] = None, num_classes: Optional[int] = None
) -> str:
    """A complete PaddleSeg config: a shipped dataset base (via an absolute `_base_`) + the exact model."""
    import yaml

    base = os.path.abspath(base_config or default_base_config())
    if not os.path.isfile(base):
        raise FileNotFoundError(
            f"base config '{base}' does not exist; pass --base-config with a dataset config "
            f"such as configs/_base_/ade20k.yml."
        )
    arch = conv.arch
    base_classes = _dataset_classes(base)
    if arch.num_classes is None:
        arch = Arch(**{**arch.to_json(), "num_classes": num_classes or base_classes or DEFAULT_CLASSES})
    elif num_classes is not None and num_classes != arch.num_classes:
        raise ConversionError(f"--num-classes {num_classes} disagrees with the weights' {arch.num_classes} classes.")
    if base_classes is not None and base_classes != arch.num_classes:
        raise ConversionError(
            f"the weights have {arch.num_classes} classes but the base config '{base}' trains on "
            f"{base_classes}; PaddleSeg refuses that pair. Pass --base-config with a dataset of "
            f"{arch.num_classes} classes (e.g. a `type: Dataset` config with num_classes)."
        )
    cfg = {"_base_": base, "model": model_config(arch, os.path.abspath(weights))}
    header = (
        f"# Written by tools/convert.py from {os.path.abspath(conv.source)} ({conv.fmt}).\n"
        f"# The model section is the exact architecture of the weights; the rest comes from _base_.\n"
    )
    return header + yaml.safe_dump(cfg, sort_keys=False)


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
        given = {**_recorded_overrides(src), **{k: v for k, v in (overrides or {}).items() if v is not None}}
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
            warnings.warn(
                f"'{src}' has neither a .model.json nor a state.json beside it, and no base config model "
                f"section of these weights' shapes states {guessed}, so they are assumed (heads = width "
                f"// 64, eps {FAMILY_DEFAULTS[conv.fmt][0]}, {FAMILY_DEFAULTS[conv.fmt][1]}); pass "
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

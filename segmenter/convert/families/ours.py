"""Our own files: Paddle `.pdparams`, PyTorch `.pth`, `.safetensors`. Keys are already canonical (or a bare ViT);
what the weights cannot tell is recorded beside them (`<file>.model.json`, a checkpoint's `state.json`) or, for
.safetensors, in the file's metadata."""

import json
from typing import Any, Dict, List, Mapping, Tuple

from segmenter.convert import files
from segmenter.convert.family import Family, bare_vit, has_prefix
from segmenter.convert.keymaps import BARE_VIT, BLOCK, DENSE, HYBRID, LAYER_SCALE, TORCH_BN_COUNTER, Rename

RENAMES: List[Rename] = (
    [
        (r"(backbone\.(cls_token|dist_token|pos_embed))", r"\1"),
        (r"(backbone\.patch_embed\.proj\.(weight|bias))", r"\1"),
        (r"(backbone\." + HYBRID + ")", r"\1"),
        (r"(backbone\." + BLOCK + ")", r"\1"),
        (r"(backbone\." + LAYER_SCALE + ")", r"\1"),
        (r"(backbone\.norm\.(weight|bias))", r"\1"),
        (r"(decoder\.head\.(weight|bias))", r"\1"),
        (r"(decoder\.(cls_emb|proj_patch|proj_classes))", r"\1"),
        (r"(decoder\.(proj_dec|decoder_norm|mask_norm)\.(weight|bias))", r"\1"),
        (r"(decoder\." + BLOCK + ")", r"\1"),
    ]
    + DENSE
    + BARE_VIT
)
# A bare ViT file (ours, or PaddleSeg's ImageNet backbones) may still carry its ImageNet classifier; a PyTorch
# file of UPerNetViT counts BatchNorm batches (training state, not weights).
DROPS: Tuple[str, ...] = (r"head\.(weight|bias)", TORCH_BN_COUNTER)

SAFETENSORS_LAYOUT = "segmenter-torch"  # metadata tag of our .safetensors (PyTorch layout)
# Arch fields our .safetensors metadata records at its top level.
_SAVED = (
    "img_size",
    "num_heads",
    "norm_eps",
    "pos_embed_interp",
    "out_indices",
    "logits_resize",
    "layer_scale_init",
    "patch_remainder",
)


def recorded_overrides(path: str, meta: Mapping[str, str] = None) -> Dict[str, Any]:
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
        "logits_resize": model.get("logits_resize"),
        "decoder_heads": dec.get("n_heads"),
        "decoder_norm_eps": dec.get("norm_eps"),
        # UPerNetViT: which maps, rescaled how, and where the auxiliary head reads (MMSeg v0.x differs from 1.x)
        "out_indices": bb.get("out_indices"),
        "neck_scales": (model.get("neck") or {}).get("scales"),
        "pool_scales": (model.get("decode_head") or {}).get("pool_scales"),
        "aux_in_index": (model.get("auxiliary_head") or {}).get("in_index"),
    }


def _saved_arch(path: str, meta: Mapping[str, str]) -> Dict[str, Any]:
    """The architecture our .safetensors records in its metadata (`arch`, Arch.to_json)."""
    if not meta.get("arch"):
        return {}
    saved = json.loads(meta["arch"])
    return {
        **{k: saved.get(k) for k in _SAVED},
        "neck_scales": (saved.get("neck") or {}).get("scales"),
        "pool_scales": (saved.get("decode_head") or {}).get("pool_scales"),
        "aux_in_index": (saved.get("auxiliary_head") or {}).get("in_index"),
        "decoder_heads": (saved.get("decoder") or {}).get("n_heads"),
        "decoder_norm_eps": (saved.get("decoder") or {}).get("norm_eps"),
    }


def _whole(keys) -> bool:
    return has_prefix(keys, "backbone.", "decoder.")


PADDLE = Family(
    "paddle",
    detect=lambda ext, keys, meta: ext in files.PADDLE_EXTS and (_whole(keys) or bare_vit(keys)),
    norm_eps=1e-5,
    pos_embed_interp="bilinear",
    torch_layout=False,
    renames=RENAMES,
    drops=DROPS,
    facts=recorded_overrides,
)
TORCH = Family(
    "torch",
    detect=lambda ext, keys, meta: ext in files.TORCH_EXTS and _whole(keys),
    norm_eps=1e-5,
    pos_embed_interp="bilinear",
    torch_layout=True,
    renames=RENAMES,
    drops=DROPS,
    facts=recorded_overrides,
)
SAFETENSORS = Family(
    "safetensors",
    detect=lambda ext, keys, meta: (
        ext in files.SAFETENSORS_EXTS and (meta.get("layout") == SAFETENSORS_LAYOUT or _whole(keys))
    ),
    norm_eps=1e-5,
    pos_embed_interp="bilinear",
    torch_layout=True,
    renames=RENAMES,
    drops=DROPS,
    facts=_saved_arch,
)

"""MMSegmentation: 1.x Segmenter and ViT/DeiT UPerNet checkpoints (`{"meta", "state_dict"}` or bare, PyTorch
layout), v0.13 / v0.14 UPerNet ViT checkpoints, and the way back (`tools/convert.py --to mmseg`)."""

import re
import warnings
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from segmenter.convert import files
from segmenter.convert.family import ConversionError, Converted, Family, Renamed, apply_table, has_prefix
from segmenter.convert.keymaps import BLOCK, DENSE, TORCH_BN_COUNTER, Rename
from segmenter.convert.layout import to_layout


# Its ViT wraps torch's nn.MultiheadAttention, whose in_proj_weight [3D, D] is timm's fused qkv (q, k, v stacked)
# in PyTorch layout; FFN = Linear, GELU, Linear.
def _mm_blocks(src: str, dst: str) -> List[Rename]:
    return [
        (src + r"layers\.(\d+)\.ln1\.(weight|bias)", dst + r"blocks.\1.norm1.\2"),
        (src + r"layers\.(\d+)\.ln2\.(weight|bias)", dst + r"blocks.\1.norm2.\2"),
        (src + r"layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)", dst + r"blocks.\1.attn.qkv.\2"),
        (src + r"layers\.(\d+)\.attn\.attn\.out_proj\.(weight|bias)", dst + r"blocks.\1.attn.proj.\2"),
        (src + r"layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)", dst + r"blocks.\1.mlp.fc1.\2"),
        (src + r"layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)", dst + r"blocks.\1.mlp.fc2.\2"),
    ]


_VIT: List[Rename] = [
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.patch_embed\.projection\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"backbone\.ln1\.(weight|bias)", r"backbone.norm.\1"),  # final_norm=True
] + _mm_blocks(r"backbone\.", "backbone.")
# The PPM's branches are Sequential(pool, ConvModule) in MMSeg: ours has no `.1.`.
_PPM: List[Rename] = [
    (r"decode_head\.psp_modules\.(\d+)\.1\.(conv\.weight|bn\.weight|bn\.bias)", r"decode_head.psp_modules.\1.\2"),
    (r"decode_head\.psp_modules\.(\d+)\.1\.bn\.running_mean", r"decode_head.psp_modules.\1.bn._mean"),
    (r"decode_head\.psp_modules\.(\d+)\.1\.bn\.running_var", r"decode_head.psp_modules.\1.bn._variance"),
]
# MMSeg's Segmenter rows: SegmenterMaskTransformerHead, or FCNHead with num_convs=0 (a 1x1 conv = our linear).
SEGMENTER_RENAMES: List[Rename] = (
    _VIT
    + [
        (r"decode_head\.dec_proj\.(weight|bias)", r"decoder.proj_dec.\1"),
        (r"decode_head\.cls_emb", r"decoder.cls_emb"),
        (r"decode_head\.patch_proj\.weight", r"decoder.proj_patch"),
        (r"decode_head\.classes_proj\.weight", r"decoder.proj_classes"),
        (r"decode_head\.(decoder_norm|mask_norm)\.(weight|bias)", r"decoder.\1.\2"),
        (r"decode_head\.conv_seg\.(weight|bias)", r"decoder.head.\1"),
    ]
    + _mm_blocks(r"decode_head\.", "decoder.")
)
# MMSeg's ViT/DeiT UPerNet rows: the neck and heads keep MMSeg's names, less the PPM's Sequential index.
UPERNET_RENAMES: List[Rename] = _VIT + _PPM + DENSE
DROPS: Tuple[str, ...] = (TORCH_BN_COUNTER,)
# MMSeg v0.13 / v0.14 (mmseg/models/backbones/vit.py of those releases; the UPerNet ViT/DeiT configs of PR #520
# before its merge, e.g. commit 4d77761): a timm-style ViT under `backbone.` (`patch_embed.proj` with a bias,
# `blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}` as nn.Linear, `norm` only with final_norm), then
# MultiLevelNeck (1x1 / 3x3 ConvModules with a bias, no norm) and the heads under MMSeg's names, as in 1.x.
V0_RENAMES: List[Rename] = (
    [
        (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
        (r"backbone\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
        (r"backbone\." + BLOCK, r"backbone.blocks.\1.\2.\3"),
        (r"backbone\.norm\.(weight|bias)", r"backbone.norm.\1"),  # final_norm=True
    ]
    + _PPM
    + DENSE
)
V0_DROPS: Tuple[str, ...] = (TORCH_BN_COUNTER,)

# Reshapes of values between MMSeg's modules and ours, by name.
RESHAPES = {
    "transpose": lambda v: np.ascontiguousarray(v.T),
    "squeeze_1x1": lambda v: v.reshape(v.shape[0], v.shape[1]),  # [K, D, 1, 1] -> [K, D]
    "unsqueeze_1x1": lambda v: v.reshape(v.shape[0], v.shape[1], 1, 1),  # [K, D] -> [K, D, 1, 1]
}
# Canonical key -> reshape of an MMSeg value, applied before the layout change.
FROM_MMSEG_RESHAPES: Dict[str, str] = {
    r"decoder\.(proj_patch|proj_classes)": "transpose",  # nn.Linear(bias=False) [out, in] -> the raw [in, out]
    r"decoder\.head\.weight": "squeeze_1x1",  # conv_seg [K, D, 1, 1] -> Linear [K, D] (PyTorch layout)
}


def reshape_for(key: str, value: np.ndarray, table: Mapping[str, str]) -> np.ndarray:
    """`value` reshaped as the first `table` pattern matching `key` says (RESHAPES), else unchanged."""
    for pattern, how in table.items():
        if re.fullmatch(pattern, key):
            return RESHAPES[how](value)
    return value


def _rename(raw: Mapping[str, Any], source: str) -> Renamed:
    """The Segmenter table, or the UPerNet one when the keys hold a PPM; then MMSeg's reshapes."""
    renames = UPERNET_RENAMES if has_prefix(raw, "decode_head.psp_modules.") else SEGMENTER_RENAMES
    state, dropped = apply_table(raw, renames, DROPS, source, "mmseg")
    return {k: reshape_for(k, np.asarray(v), FROM_MMSEG_RESHAPES) for k, v in state.items()}, dropped, {}


def _is_mmseg(ext: str, keys, meta) -> bool:
    # nn.MultiheadAttention (`attn.attn.`) or a decode head: MMSeg; mmpretrain's ViT has fused qkv and no head
    return (
        ext in files.TORCH_EXTS
        and has_prefix(keys, "backbone.layers.")
        and has_prefix(keys, "decode_head.", "backbone.layers.0.attn.attn.")
    )


def _is_mmseg0(ext: str, keys, meta) -> bool:
    # timm-style ViT blocks under backbone., and MMSeg's PPM Sequential (ours has no `.1.`)
    return (
        ext in files.TORCH_EXTS
        and has_prefix(keys, "backbone.blocks.")
        and any(re.match(r"decode_head\.psp_modules\.\d+\.1\.", k) for k in keys)
    )


# MMSeg's heads use LayerNorm eps 1e-5 (its backbone 1e-6) and resize the logits of the padded grid straight to
# the input size.
MMSEG = Family(
    "mmseg",
    detect=_is_mmseg,
    norm_eps=1e-6,
    pos_embed_interp="bicubic",
    torch_layout=True,
    rename=_rename,
    overrides={"decoder_norm_eps": 1e-5, "logits_resize": "stretch"},
)
# MMSeg v0.13/v0.14's UPerNet ViT configs (PR #520, before its merge): one map (block 11) into a MultiLevelNeck that
# rescales it by [0.5, 1, 2, 4], coarsest first, and the FCN auxiliary head on map 0 (the coarsest); its patch conv
# has no padding, so pixels past the last whole patch are dropped.
MMSEG0 = Family(
    "mmseg0",
    detect=_is_mmseg0,
    norm_eps=1e-6,
    pos_embed_interp="bicubic",
    torch_layout=True,
    renames=V0_RENAMES,
    drops=V0_DROPS,
    overrides={"neck_scales": [0.5, 1, 2, 4], "aux_in_index": 0, "patch_remainder": "drop"},
)


# Back to MMSeg (the other direction): canonical keys in PyTorch layout (layout.to_layout) -> MMSeg's.
def _mm_blocks_out(src: str, dst: str) -> List[Rename]:
    return [
        (src + r"blocks\.(\d+)\.norm1\.(weight|bias)", dst + r"layers.\1.ln1.\2"),
        (src + r"blocks\.(\d+)\.norm2\.(weight|bias)", dst + r"layers.\1.ln2.\2"),
        (src + r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", dst + r"layers.\1.attn.attn.in_proj_\2"),
        (src + r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", dst + r"layers.\1.attn.attn.out_proj.\2"),
        (src + r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", dst + r"layers.\1.ffn.layers.0.0.\2"),
        (src + r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", dst + r"layers.\1.ffn.layers.1.\2"),
    ]


_TO_VIT: List[Rename] = [
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.projection.\1"),
    (r"backbone\.norm\.(weight|bias)", r"backbone.ln1.\1"),
] + _mm_blocks_out(r"backbone\.", "backbone.")
TO_SEGMENTER: List[Rename] = (
    _TO_VIT
    + [
        (r"decoder\.proj_dec\.(weight|bias)", r"decode_head.dec_proj.\1"),
        (r"decoder\.cls_emb", r"decode_head.cls_emb"),
        (r"decoder\.proj_patch", r"decode_head.patch_proj.weight"),
        (r"decoder\.proj_classes", r"decode_head.classes_proj.weight"),
        (r"decoder\.(decoder_norm|mask_norm)\.(weight|bias)", r"decode_head.\1.\2"),
        (r"decoder\.head\.(weight|bias)", r"decode_head.conv_seg.\1"),
    ]
    + _mm_blocks_out(r"decoder\.", "decode_head.")
)
TO_UPERNET: List[Rename] = _TO_VIT + [
    (r"decode_head\.psp_modules\.(\d+)\.(.*)", r"decode_head.psp_modules.\1.1.\2"),
    (r"((?:decode_head|auxiliary_head|neck)\..*)", r"\1"),
]
# MMSeg key -> reshape (RESHAPES) of the value written there; the inverse of FROM_MMSEG_RESHAPES.
TO_MMSEG_RESHAPES: Dict[str, str] = {
    r"decode_head\.(patch_proj|classes_proj)\.weight": "transpose",
    r"decode_head\.conv_seg\.weight": "unsqueeze_1x1",  # Segmenter's linear decoder only (TO_SEGMENTER)
}


def to_mmseg(conv: Converted) -> Dict[str, np.ndarray]:
    """Canonical weights in MMSeg's layout (PyTorch arrays), by the TO_* tables, strictly."""
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
    table = TO_UPERNET if conv.arch.decode_head else TO_SEGMENTER
    state, _ = apply_table(to_layout(conv.state, "torch"), table, (), conv.source, "canonical")
    return {k: reshape_for(k, v, TO_MMSEG_RESHAPES if conv.arch.decoder else {}) for k, v in state.items()}

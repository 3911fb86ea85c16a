"""timm's ViT / DeiT / DeiT-III and hybrid R50+ViT state dicts (PyTorch layout), and Google's AugReg / original
ViT `.npz` (Flax) that timm and the official Segmenter pretrained from. Backbones only."""

import math
import re
import warnings
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from segmenter.convert import files
from segmenter.convert.arch import token_stride
from segmenter.convert.family import ConversionError, Family, Renamed, apply_table, bare_vit
from segmenter.convert.keymaps import BARE_VIT, Rename

# timm VisionTransformer / DeiT state dicts; `init_values` models carry blocks.i.ls{1,2}.gamma.
TIMM_RENAMES: List[Rename] = list(BARE_VIT)
TIMM_DROPS: Tuple[str, ...] = (r"head\.(weight|bias)", r"head_dist\.(weight|bias)", r"pre_logits\.fc\.(weight|bias)")


def no_class_pos_row(
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


def _prefix_pos_rows(state: Dict[str, np.ndarray], overrides: Dict[str, Any], path: str) -> Dict[str, np.ndarray]:
    """timm's `no_embed_class` ViTs (DeiT-III) add pos_embed before prepending the class (and distillation) token;
    ours adds positions after, so a zero row per prefix token gives the same sums exactly, at any input size (only
    the grid rows are resampled)."""
    if not no_class_pos_row(state, overrides, path):
        return state
    pos = state["backbone.pos_embed"]
    prefix = 2 if "backbone.dist_token" in state else 1
    zeros = np.zeros((1, prefix, pos.shape[2]), dtype=pos.dtype)
    return {**state, "backbone.pos_embed": np.concatenate([zeros, pos], axis=1)}  # [1, prefix + N, D]


TIMM = Family(
    "timm",
    detect=lambda ext, keys, meta: ext in files.SAFETENSORS_EXTS + files.TORCH_EXTS and bare_vit(keys),
    norm_eps=1e-6,
    pos_embed_interp="bicubic_antialias",
    torch_layout=True,
    renames=TIMM_RENAMES,
    drops=TIMM_DROPS,
    finish=_prefix_pos_rows,
)

# Google AugReg / original ViT .npz: (source regex, target template, reshape in NPZ_RESHAPES). Flax kernels are
# [in, out] like Paddle's, so nothing transposes except the conv. query/key/value land on intermediate
# `attn.{query,key,value}` keys that are then concatenated into `attn.qkv`.
_NPZ_BLOCK = r"Transformer/encoderblock_(\d+)/"
NPZ_RENAMES: List[Tuple[str, str, str]] = [
    (r"embedding/kernel", r"backbone.patch_embed.proj.weight", "hwio_to_oihw"),
    (r"embedding/bias", r"backbone.patch_embed.proj.bias", "none"),
    (r"cls", r"backbone.cls_token", "none"),
    (r"Transformer/posembed_input/pos_embedding", r"backbone.pos_embed", "none"),
    (r"Transformer/encoder_norm/scale", r"backbone.norm.weight", "none"),
    (r"Transformer/encoder_norm/bias", r"backbone.norm.bias", "none"),
    (_NPZ_BLOCK + r"LayerNorm_0/scale", r"backbone.blocks.\1.norm1.weight", "none"),
    (_NPZ_BLOCK + r"LayerNorm_0/bias", r"backbone.blocks.\1.norm1.bias", "none"),
    (_NPZ_BLOCK + r"LayerNorm_2/scale", r"backbone.blocks.\1.norm2.weight", "none"),
    (_NPZ_BLOCK + r"LayerNorm_2/bias", r"backbone.blocks.\1.norm2.bias", "none"),
    (_NPZ_BLOCK + r"MlpBlock_3/Dense_0/kernel", r"backbone.blocks.\1.mlp.fc1.weight", "none"),
    (_NPZ_BLOCK + r"MlpBlock_3/Dense_0/bias", r"backbone.blocks.\1.mlp.fc1.bias", "none"),
    (_NPZ_BLOCK + r"MlpBlock_3/Dense_1/kernel", r"backbone.blocks.\1.mlp.fc2.weight", "none"),
    (_NPZ_BLOCK + r"MlpBlock_3/Dense_1/bias", r"backbone.blocks.\1.mlp.fc2.bias", "none"),
    (
        _NPZ_BLOCK + r"MultiHeadDotProductAttention_1/(query|key|value)/kernel",
        r"backbone.blocks.\1.attn.\2.weight",
        "heads_in",
    ),
    (
        _NPZ_BLOCK + r"MultiHeadDotProductAttention_1/(query|key|value)/bias",
        r"backbone.blocks.\1.attn.\2.bias",
        "flatten",
    ),
    (_NPZ_BLOCK + r"MultiHeadDotProductAttention_1/out/kernel", r"backbone.blocks.\1.attn.proj.weight", "heads_out"),
    (_NPZ_BLOCK + r"MultiHeadDotProductAttention_1/out/bias", r"backbone.blocks.\1.attn.proj.bias", "none"),
]
# The ResNet of the Google R50+ViT (and R26 / Ti stem) .npz, as timm's npz loader reads it: HWIO conv kernels
# (standardised in the forward, stored raw), GroupNorm scale/bias. NPZ_STEM for a stem-only hybrid (no blockN/).
# Google counts blocks and units from 1: `{N-1}` in a target is that 1-based index made 0-based (_zero_based).
_NPZ_UNIT = r"block(\d+)/unit(\d+)/"
_NPZ_STAGE = r"backbone.patch_embed.backbone.stages.{\1-1}.blocks.{\2-1}."
NPZ_RESNET: List[Tuple[str, str, str]] = [
    (r"conv_root/kernel", r"backbone.patch_embed.backbone.stem.conv.weight", "hwio_to_oihw"),
    (r"gn_root/scale", r"backbone.patch_embed.backbone.stem.norm.weight", "flatten"),
    (r"gn_root/bias", r"backbone.patch_embed.backbone.stem.norm.bias", "flatten"),
    (_NPZ_UNIT + r"conv([123])/kernel", _NPZ_STAGE + r"conv\3.weight", "hwio_to_oihw"),
    (_NPZ_UNIT + r"gn([123])/scale", _NPZ_STAGE + r"norm\3.weight", "flatten"),
    (_NPZ_UNIT + r"gn([123])/bias", _NPZ_STAGE + r"norm\3.bias", "flatten"),
    (_NPZ_UNIT + r"conv_proj/kernel", _NPZ_STAGE + r"downsample.conv.weight", "hwio_to_oihw"),
    (_NPZ_UNIT + r"gn_proj/scale", _NPZ_STAGE + r"downsample.norm.weight", "flatten"),
    (_NPZ_UNIT + r"gn_proj/bias", _NPZ_STAGE + r"downsample.norm.bias", "flatten"),
]
NPZ_STEM: List[Tuple[str, str, str]] = [
    (r"conv_root/kernel", r"backbone.patch_embed.backbone.conv.weight", "hwio_to_oihw"),
    (r"gn_root/scale", r"backbone.patch_embed.backbone.norm.weight", "flatten"),
    (r"gn_root/bias", r"backbone.patch_embed.backbone.norm.bias", "flatten"),
]
NPZ_DROPS: Tuple[str, ...] = (r"head/(kernel|bias)", r"pre_logits/(kernel|bias)")
# Keys that are training state rather than weights, in npz files saved with the optimizer.
NPZ_OPTIMIZER_PREFIX = "opt/target/"
NPZ_RESHAPES = {
    "none": lambda v: v,
    "hwio_to_oihw": lambda v: v.transpose(3, 2, 0, 1),  # [p, p, C, D] -> [D, C, p, p]
    "heads_in": lambda v: v.reshape(v.shape[0], -1),  # [D, heads, hd] -> [D, D]  ([in, out])
    "flatten": lambda v: v.reshape(-1),  # [heads, hd] -> [D]
    "heads_out": lambda v: v.reshape(-1, v.shape[-1]),  # [heads, hd, D] -> [D, D]  ([in, out])
}


def _zero_based(key: str) -> str:
    """`{N-1}` in a key made by NPZ_RESNET (Google's 1-based block / unit number N) -> N - 1."""
    return re.sub(r"\{(\d+)-1\}", lambda m: str(int(m.group(1)) - 1), key)


def _npz_rename(raw: Mapping[str, np.ndarray], source: str) -> Renamed:
    """Flax names -> canonical, each value reshaped as its row says; q/k/v kernels fused into qkv."""
    dropped = []
    if any(k.startswith(NPZ_OPTIMIZER_PREFIX) for k in raw):  # saved with optimizer state: keep the weights
        dropped = [k for k in raw if not k.startswith(NPZ_OPTIMIZER_PREFIX)]
        raw = {k[len(NPZ_OPTIMIZER_PREFIX) :]: v for k, v in raw.items() if k.startswith(NPZ_OPTIMIZER_PREFIX)}
    # A hybrid's ResNet (R50 / R26 stages, or the stem alone when there is no block1/).
    table = NPZ_RENAMES + (
        NPZ_RESNET if "block1/unit1/conv1/kernel" in raw else NPZ_STEM if "conv_root/kernel" in raw else []
    )
    renames = [(p, t) for p, t, _ in table]
    mapped, dropped_here = apply_table(raw, renames, NPZ_DROPS, source, "npz")
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


# timm's `.npz` loader and the official Segmenter resize these pos-embeds bilinearly.
NPZ = Family(
    "npz",
    detect=lambda ext, keys, meta: ext in files.NPZ_EXTS,
    norm_eps=1e-6,
    pos_embed_interp="bilinear",
    torch_layout=False,
    rename=_npz_rename,
)

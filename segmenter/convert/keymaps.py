"""Key-map tables, one per checkpoint family, onto our canonical layout. Tables only: no logic here.

Canonical layout = the state dict of our Paddle `Segmenter`: keys `backbone.*` and `decoder.*`, every Linear
weight stored [in, out]. A table is a list of (source regex, target template) renames, applied with
`re.fullmatch`, plus a tuple of regexes for keys dropped on purpose. Which canonical keys transpose between
Paddle ([in, out]) and PyTorch ([out, in]) is the explicit tuple `LINEAR_WEIGHTS`.
"""

from typing import Dict, List, Tuple

Rename = Tuple[str, str]

_BLOCK = r"blocks\.(\d+)\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
# LayerScale of the encoder blocks (timm's names; SegmenterViT(layer_scale_init=...)); decoders have none.
_LAYER_SCALE = r"blocks\.(\d+)\.(ls1|ls2)\.gamma"
# The ResNetV2 of a hybrid ViT (timm's HybridEmbed backbone; `stem.` absent when it is the stem alone).
_HYBRID = (
    r"patch_embed\.backbone\.((?:stem\.)?(?:conv\.weight|norm\.(?:weight|bias))"
    r"|stages\.\d+\.blocks\.\d+\.(?:conv[123]\.weight|norm[123]\.(?:weight|bias)"
    r"|downsample\.conv\.weight|downsample\.norm\.(?:weight|bias)))"
)

# Canonical keys holding a Linear weight: [in, out] in Paddle, [out, in] in PyTorch. Everything else
# (conv kernels, LayerNorm, tokens, pos_embed, the raw proj_patch / proj_classes matrices) never transposes.
LINEAR_WEIGHTS: Tuple[str, ...] = (
    r"backbone\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight",
    r"decoder\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight",
    r"decoder\.head\.weight",
    r"decoder\.proj_dec\.weight",
)

# BatchNorm statistics: Paddle's names are canonical; PyTorch files name them otherwise and count batches.
TORCH_BN_BUFFERS: Dict[str, str] = {".bn._mean": ".bn.running_mean", ".bn._variance": ".bn.running_var"}
TORCH_BN_COUNTER = r"(.*\.bn)\.num_batches_tracked"

# Conv modules of the dense heads and the neck (UPerNetViT): `conv` (+ `bn`) per module, canonical names.
_CONV_MODULE = (
    r"((?:decode_head|auxiliary_head)\.(?:psp_modules\.\d+|bottleneck|lateral_convs\.\d+|fpn_convs\.\d+"
    r"|fpn_bottleneck|convs\.\d+)|neck\.(?:lateral_convs|convs)\.\d+)"
)
_DENSE: List[Rename] = [
    (_CONV_MODULE + r"\.(conv\.weight|conv\.bias|bn\.weight|bn\.bias|bn\._mean|bn\._variance)", r"\1.\2"),
    (_CONV_MODULE + r"\.bn\.running_mean", r"\1.bn._mean"),
    (_CONV_MODULE + r"\.bn\.running_var", r"\1.bn._variance"),
    (r"(decode_head|auxiliary_head)\.conv_seg\.(weight|bias)", r"\1.conv_seg.\2"),
]

# A bare ViT (our SegmenterViT state dict, PaddleSeg's or timm's backbone files) -> backbone.*
_BARE_VIT: List[Rename] = [
    (r"(cls_token|dist_token|pos_embed)", r"backbone.\1"),
    (r"patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (_HYBRID, r"backbone.patch_embed.backbone.\1"),
    (_BLOCK, r"backbone.blocks.\1.\2.\3"),
    (_LAYER_SCALE, r"backbone.blocks.\1.\2.gamma"),
    (r"norm\.(weight|bias)", r"backbone.norm.\1"),
]

# Our own files (Paddle .pdparams, PyTorch .pth, .safetensors): already canonical names.
OURS: List[Rename] = (
    [
        (r"(backbone\.(cls_token|dist_token|pos_embed))", r"\1"),
        (r"(backbone\.patch_embed\.proj\.(weight|bias))", r"\1"),
        (r"(backbone\." + _HYBRID + ")", r"\1"),
        (r"(backbone\." + _BLOCK + ")", r"\1"),
        (r"(backbone\." + _LAYER_SCALE + ")", r"\1"),
        (r"(backbone\.norm\.(weight|bias))", r"\1"),
        (r"(decoder\.head\.(weight|bias))", r"\1"),
        (r"(decoder\.(cls_emb|proj_patch|proj_classes))", r"\1"),
        (r"(decoder\.(proj_dec|decoder_norm|mask_norm)\.(weight|bias))", r"\1"),
        (r"(decoder\." + _BLOCK + ")", r"\1"),
    ]
    + _DENSE
    + _BARE_VIT
)
# A bare ViT file (ours, or PaddleSeg's ImageNet backbones) may still carry its ImageNet classifier; a PyTorch
# file of UPerNetViT counts BatchNorm batches (training state, not weights).
OURS_DROP: Tuple[str, ...] = (r"head\.(weight|bias)", TORCH_BN_COUNTER)

# The official Segmenter checkpoint.pth ["model"] (rstrudel/segmenter, PyTorch layout).
OFFICIAL: List[Rename] = [
    (r"encoder\.(cls_token|dist_token|pos_embed)", r"backbone.\1"),
    (r"encoder\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"encoder\." + _BLOCK, r"backbone.blocks.\1.\2.\3"),
    (r"encoder\.norm\.(weight|bias)", r"backbone.norm.\1"),
    (r"decoder\.head\.(weight|bias)", r"decoder.head.\1"),
    (r"decoder\.(cls_emb|proj_patch|proj_classes)", r"decoder.\1"),
    (r"decoder\.(proj_dec|decoder_norm|mask_norm)\.(weight|bias)", r"decoder.\1.\2"),
    (r"decoder\." + _BLOCK, r"decoder.blocks.\1.\2.\3"),
]
# The ImageNet classifier heads of the encoder are never used for segmentation.
OFFICIAL_DROP: Tuple[str, ...] = (r"encoder\.head\.(weight|bias)", r"encoder\.head_dist\.(weight|bias)")

# PaddleSeg 2.8 LinearSegmenter / MaskSegmenter .pdparams (Paddle layout). Its proj_patch / proj_class are
# Linear(bias_attr=False) whose [in, out] weight is the raw matrix our decoder multiplies by: no transpose.
PADDLESEG: List[Rename] = [
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"backbone\." + _BLOCK, r"backbone.blocks.\1.\2.\3"),
    (r"backbone\.norm\.(weight|bias)", r"backbone.norm.\1"),
    (r"head\.head\.(weight|bias)", r"decoder.head.\1"),
    (r"head\.proj_input\.(weight|bias)", r"decoder.proj_dec.\1"),
    (r"head\.cls_token", r"decoder.cls_emb"),
    (r"head\.proj_patch\.weight", r"decoder.proj_patch"),
    (r"head\.proj_class\.weight", r"decoder.proj_classes"),
    (r"head\.(decoder_norm|mask_norm)\.(weight|bias)", r"decoder.\1.\2"),
    (r"head\." + _BLOCK, r"decoder.blocks.\1.\2.\3"),
]
PADDLESEG_DROP: Tuple[str, ...] = ()

# timm VisionTransformer / DeiT state dicts (PyTorch layout); `init_values` models carry blocks.i.ls{1,2}.gamma.
TIMM: List[Rename] = list(_BARE_VIT)
TIMM_DROP: Tuple[str, ...] = (r"head\.(weight|bias)", r"head_dist\.(weight|bias)", r"pre_logits\.fc\.(weight|bias)")

# Google AugReg / original ViT .npz (Flax). Values get the named reshape (see convert.core.NPZ_RESHAPES);
# Flax kernels are [in, out] like Paddle's, so nothing transposes except the conv.
# query/key/value land on intermediate `attn.{query,key,value}` keys that are then concatenated into `attn.qkv`.
_NPZ_BLOCK = r"Transformer/encoderblock_(\d+)/"
NPZ: List[Tuple[str, str, str]] = [
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
# Google counts blocks and units from 1: `{N-1}` in a target is that 1-based index made 0-based (convert.core).
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
NPZ_DROP: Tuple[str, ...] = (r"head/(kernel|bias)", r"pre_logits/(kernel|bias)")
# Keys that are training state rather than weights, in npz files saved with the optimizer.
NPZ_OPTIMIZER_PREFIX = "opt/target/"


# MMSegmentation 1.x (`{"meta", "state_dict"}` or bare). Its ViT wraps torch's nn.MultiheadAttention, whose
# in_proj_weight [3D, D] is timm's fused qkv (q, k, v stacked) in PyTorch layout; FFN = Linear, GELU, Linear.
def _mm_blocks(src: str, dst: str) -> List[Rename]:
    return [
        (src + r"layers\.(\d+)\.ln1\.(weight|bias)", dst + r"blocks.\1.norm1.\2"),
        (src + r"layers\.(\d+)\.ln2\.(weight|bias)", dst + r"blocks.\1.norm2.\2"),
        (src + r"layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)", dst + r"blocks.\1.attn.qkv.\2"),
        (src + r"layers\.(\d+)\.attn\.attn\.out_proj\.(weight|bias)", dst + r"blocks.\1.attn.proj.\2"),
        (src + r"layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)", dst + r"blocks.\1.mlp.fc1.\2"),
        (src + r"layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)", dst + r"blocks.\1.mlp.fc2.\2"),
    ]


_MMSEG_VIT: List[Rename] = [
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.patch_embed\.projection\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"backbone\.ln1\.(weight|bias)", r"backbone.norm.\1"),  # final_norm=True
] + _mm_blocks(r"backbone\.", "backbone.")
# MMSeg's Segmenter rows: SegmenterMaskTransformerHead, or FCNHead with num_convs=0 (a 1x1 conv = our linear).
MMSEG_SEGMENTER: List[Rename] = (
    _MMSEG_VIT
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
MMSEG_UPERNET: List[Rename] = (
    _MMSEG_VIT
    + [
        (r"decode_head\.psp_modules\.(\d+)\.1\.(conv\.weight|bn\.weight|bn\.bias)", r"decode_head.psp_modules.\1.\2"),
        (r"decode_head\.psp_modules\.(\d+)\.1\.bn\.running_mean", r"decode_head.psp_modules.\1.bn._mean"),
        (r"decode_head\.psp_modules\.(\d+)\.1\.bn\.running_var", r"decode_head.psp_modules.\1.bn._variance"),
    ]
    + _DENSE
)
MMSEG_DROP: Tuple[str, ...] = (TORCH_BN_COUNTER,)
# MMSeg v0.13 / v0.14 (mmseg/models/backbones/vit.py of those releases; the UPerNet ViT/DeiT configs of PR #520
# before its merge, e.g. commit 4d77761): a timm-style ViT under `backbone.` (`patch_embed.proj` with a bias,
# `blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}` as nn.Linear, `norm` only with final_norm), then
# MultiLevelNeck (1x1 / 3x3 ConvModules with a bias, no norm) and the heads under MMSeg's names, as in 1.x.
MMSEG0_UPERNET: List[Rename] = [
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"backbone\." + _BLOCK, r"backbone.blocks.\1.\2.\3"),
    (r"backbone\.norm\.(weight|bias)", r"backbone.norm.\1"),  # final_norm=True
    (r"decode_head\.psp_modules\.(\d+)\.1\.(conv\.weight|bn\.weight|bn\.bias)", r"decode_head.psp_modules.\1.\2"),
    (r"decode_head\.psp_modules\.(\d+)\.1\.bn\.running_mean", r"decode_head.psp_modules.\1.bn._mean"),
    (r"decode_head\.psp_modules\.(\d+)\.1\.bn\.running_var", r"decode_head.psp_modules.\1.bn._variance"),
] + _DENSE
MMSEG0_DROP: Tuple[str, ...] = (TORCH_BN_COUNTER,)
# Canonical key -> reshape of an MMSeg value (names in convert.core.RESHAPES), applied before the layout change.
MMSEG_RESHAPES: Dict[str, str] = {
    r"decoder\.(proj_patch|proj_classes)": "transpose",  # nn.Linear(bias=False) [out, in] -> the raw [in, out]
    r"decoder\.head\.weight": "squeeze_1x1",  # conv_seg [K, D, 1, 1] -> Linear [K, D] (PyTorch layout)
}

# mmpretrain's VisionTransformer (classification, ViT-B16/B32/L16): backbone only; its qkv is timm's.
MMPRETRAIN: List[Rename] = [
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.patch_embed\.projection\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"backbone\.ln1\.(weight|bias)", r"backbone.norm.\1"),
    (r"backbone\.layers\.(\d+)\.ln1\.(weight|bias)", r"backbone.blocks.\1.norm1.\2"),
    (r"backbone\.layers\.(\d+)\.ln2\.(weight|bias)", r"backbone.blocks.\1.norm2.\2"),
    (r"backbone\.layers\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)", r"backbone.blocks.\1.attn.\2.\3"),
    (r"backbone\.layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)", r"backbone.blocks.\1.mlp.fc1.\2"),
    (r"backbone\.layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)", r"backbone.blocks.\1.mlp.fc2.\2"),
    # layer_scale_init_value > 0: mmpretrain's LayerScale on the attention output, mmcv's on the FFN output,
    # both applied before the residual's drop path, as timm's ls1 / ls2.
    (r"backbone\.layers\.(\d+)\.attn\.gamma1\.weight", r"backbone.blocks.\1.ls1.gamma"),
    (r"backbone\.layers\.(\d+)\.ffn\.gamma2\.weight", r"backbone.blocks.\1.ls2.gamma"),
]
MMPRETRAIN_DROP: Tuple[str, ...] = (r"head\..*", r"data_preprocessor\..*")

TABLES: Dict[str, Tuple[List[Rename], Tuple[str, ...]]] = {
    "paddle": (OURS, OURS_DROP),
    "torch": (OURS, OURS_DROP),
    "safetensors": (OURS, OURS_DROP),
    "official": (OFFICIAL, OFFICIAL_DROP),
    "paddleseg": (PADDLESEG, PADDLESEG_DROP),
    "timm": (TIMM, TIMM_DROP),
    "mmseg": (MMSEG_SEGMENTER, MMSEG_DROP),  # convert.core picks MMSEG_UPERNET when the keys hold a PPM
    "mmseg0": (MMSEG0_UPERNET, MMSEG0_DROP),
    "mmpretrain": (MMPRETRAIN, MMPRETRAIN_DROP),
}


# Back to MMSeg (the other direction): canonical keys in PyTorch layout (convert.core.to_layout) -> MMSeg's.
def _mm_blocks_out(src: str, dst: str) -> List[Rename]:
    return [
        (src + r"blocks\.(\d+)\.norm1\.(weight|bias)", dst + r"layers.\1.ln1.\2"),
        (src + r"blocks\.(\d+)\.norm2\.(weight|bias)", dst + r"layers.\1.ln2.\2"),
        (src + r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", dst + r"layers.\1.attn.attn.in_proj_\2"),
        (src + r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", dst + r"layers.\1.attn.attn.out_proj.\2"),
        (src + r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", dst + r"layers.\1.ffn.layers.0.0.\2"),
        (src + r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", dst + r"layers.\1.ffn.layers.1.\2"),
    ]


_TO_MMSEG_VIT: List[Rename] = [
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.projection.\1"),
    (r"backbone\.norm\.(weight|bias)", r"backbone.ln1.\1"),
] + _mm_blocks_out(r"backbone\.", "backbone.")
TO_MMSEG_SEGMENTER: List[Rename] = (
    _TO_MMSEG_VIT
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
TO_MMSEG_UPERNET: List[Rename] = _TO_MMSEG_VIT + [
    (r"decode_head\.psp_modules\.(\d+)\.(.*)", r"decode_head.psp_modules.\1.1.\2"),
    (r"((?:decode_head|auxiliary_head|neck)\..*)", r"\1"),
]
# MMSeg key -> reshape (convert.core.RESHAPES) of the value written there; the inverse of MMSEG_RESHAPES.
TO_MMSEG_RESHAPES: Dict[str, str] = {
    r"decode_head\.(patch_proj|classes_proj)\.weight": "transpose",
    r"decode_head\.conv_seg\.weight": "unsqueeze_1x1",  # Segmenter's linear decoder only (TO_MMSEG_SEGMENTER)
}

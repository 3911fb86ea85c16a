"""Key-map tables, one per checkpoint family, onto our canonical layout. Tables only: no logic here.

Canonical layout = the state dict of our Paddle `Segmenter`: keys `backbone.*` and `decoder.*`, every Linear
weight stored [in, out]. A table is a list of (source regex, target template) renames, applied with
`re.fullmatch`, plus a tuple of regexes for keys dropped on purpose. Which canonical keys transpose between
Paddle ([in, out]) and PyTorch ([out, in]) is the explicit tuple `LINEAR_WEIGHTS`.
"""
from typing import Dict, List, Tuple

Rename = Tuple[str, str]

_BLOCK = r"blocks\.(\d+)\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)"

# Canonical keys holding a Linear weight: [in, out] in Paddle, [out, in] in PyTorch. Everything else
# (conv kernels, LayerNorm, tokens, pos_embed, the raw proj_patch / proj_classes matrices) never transposes.
LINEAR_WEIGHTS: Tuple[str, ...] = (
    r"backbone\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight",
    r"decoder\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight",
    r"decoder\.head\.weight",
    r"decoder\.proj_dec\.weight",
)

# A bare ViT (our SegmenterViT state dict, PaddleSeg's or timm's backbone files) -> backbone.*
_BARE_VIT: List[Rename] = [
    (r"(cls_token|dist_token|pos_embed)", r"backbone.\1"),
    (r"patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (_BLOCK, r"backbone.blocks.\1.\2.\3"),
    (r"norm\.(weight|bias)", r"backbone.norm.\1"),
]

# Our own files (Paddle .pdparams, PyTorch .pth, .safetensors): already canonical names.
OURS: List[Rename] = [
    (r"(backbone\.(cls_token|dist_token|pos_embed))", r"\1"),
    (r"(backbone\.patch_embed\.proj\.(weight|bias))", r"\1"),
    (r"(backbone\." + _BLOCK + ")", r"\1"),
    (r"(backbone\.norm\.(weight|bias))", r"\1"),
    (r"(decoder\.head\.(weight|bias))", r"\1"),
    (r"(decoder\.(cls_emb|proj_patch|proj_classes))", r"\1"),
    (r"(decoder\.(proj_dec|decoder_norm|mask_norm)\.(weight|bias))", r"\1"),
    (r"(decoder\." + _BLOCK + ")", r"\1"),
] + _BARE_VIT
# A bare ViT file (ours, or PaddleSeg's ImageNet backbones) may still carry its ImageNet classifier.
OURS_DROP: Tuple[str, ...] = (r"head\.(weight|bias)",)

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

# timm VisionTransformer / DeiT state dicts (PyTorch layout).
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
    (_NPZ_BLOCK + r"MultiHeadDotProductAttention_1/(query|key|value)/kernel", r"backbone.blocks.\1.attn.\2.weight",
     "heads_in"),
    (_NPZ_BLOCK + r"MultiHeadDotProductAttention_1/(query|key|value)/bias", r"backbone.blocks.\1.attn.\2.bias",
     "flatten"),
    (_NPZ_BLOCK + r"MultiHeadDotProductAttention_1/out/kernel", r"backbone.blocks.\1.attn.proj.weight", "heads_out"),
    (_NPZ_BLOCK + r"MultiHeadDotProductAttention_1/out/bias", r"backbone.blocks.\1.attn.proj.bias", "none"),
]
NPZ_DROP: Tuple[str, ...] = (r"head/(kernel|bias)", r"pre_logits/(kernel|bias)")
# Keys that are training state rather than weights, in npz files saved with the optimizer.
NPZ_OPTIMIZER_PREFIX = "opt/target/"

TABLES: Dict[str, Tuple[List[Rename], Tuple[str, ...]]] = {
    "paddle": (OURS, OURS_DROP),
    "torch": (OURS, OURS_DROP),
    "safetensors": (OURS, OURS_DROP),
    "official": (OFFICIAL, OFFICIAL_DROP),
    "paddleseg": (PADDLESEG, PADDLESEG_DROP),
    "timm": (TIMM, TIMM_DROP),
}

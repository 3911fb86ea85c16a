"""Key-map pieces every family's table is built from. Tables only: no logic here.

Canonical layout = the state dict of our Paddle `Segmenter`: keys `backbone.*` and `decoder.*`, every Linear
weight stored [in, out]. A table is a list of (source regex, target template) renames, applied with
`re.fullmatch`, plus a tuple of regexes for keys dropped on purpose; each family's own table sits in its file
under `convert/families/`. Which canonical keys transpose between Paddle ([in, out]) and PyTorch ([out, in]) is
the explicit tuple `LINEAR_WEIGHTS`.
"""

from typing import Dict, List, Tuple

Rename = Tuple[str, str]

BLOCK = r"blocks\.(\d+)\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
# LayerScale of the encoder blocks (timm's names; SegmenterViT(layer_scale_init=...)); decoders have none.
LAYER_SCALE = r"blocks\.(\d+)\.(ls1|ls2)\.gamma"
# The ResNetV2 of a hybrid ViT (timm's HybridEmbed backbone; `stem.` absent when it is the stem alone).
HYBRID = (
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
CONV_MODULE = (
    r"((?:decode_head|auxiliary_head)\.(?:psp_modules\.\d+|bottleneck|lateral_convs\.\d+|fpn_convs\.\d+"
    r"|fpn_bottleneck|convs\.\d+)|neck\.(?:lateral_convs|convs)\.\d+)"
)
DENSE: List[Rename] = [
    (CONV_MODULE + r"\.(conv\.weight|conv\.bias|bn\.weight|bn\.bias|bn\._mean|bn\._variance)", r"\1.\2"),
    (CONV_MODULE + r"\.bn\.running_mean", r"\1.bn._mean"),
    (CONV_MODULE + r"\.bn\.running_var", r"\1.bn._variance"),
    (r"(decode_head|auxiliary_head)\.conv_seg\.(weight|bias)", r"\1.conv_seg.\2"),
]

# A bare ViT (our SegmenterViT state dict, PaddleSeg's or timm's backbone files) -> backbone.*
BARE_VIT: List[Rename] = [
    (r"(cls_token|dist_token|pos_embed)", r"backbone.\1"),
    (r"patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (HYBRID, r"backbone.patch_embed.backbone.\1"),
    (BLOCK, r"backbone.blocks.\1.\2.\3"),
    (LAYER_SCALE, r"backbone.blocks.\1.\2.gamma"),
    (r"norm\.(weight|bias)", r"backbone.norm.\1"),
]
# The first keys of a bare ViT file (the detection rules of our files and timm's).
BARE_VIT_PREFIXES = ("cls_token", "blocks.", "patch_embed.")

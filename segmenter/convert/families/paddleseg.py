"""PaddleSeg 2.8's LinearSegmenter / MaskSegmenter `.pdparams` (Paddle layout): eps 1e-5, bicubic pos-embed
resampling, a mask decoder without qkv bias (its configs never turn it on)."""

from typing import List, Tuple

from segmenter.convert import files
from segmenter.convert.family import Family, has_prefix
from segmenter.convert.keymaps import BLOCK, Rename

# Its proj_patch / proj_class are Linear(bias_attr=False) whose [in, out] weight is the raw matrix our decoder
# multiplies by: no transpose.
RENAMES: List[Rename] = [
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"backbone\." + BLOCK, r"backbone.blocks.\1.\2.\3"),
    (r"backbone\.norm\.(weight|bias)", r"backbone.norm.\1"),
    (r"head\.head\.(weight|bias)", r"decoder.head.\1"),
    (r"head\.proj_input\.(weight|bias)", r"decoder.proj_dec.\1"),
    (r"head\.cls_token", r"decoder.cls_emb"),
    (r"head\.proj_patch\.weight", r"decoder.proj_patch"),
    (r"head\.proj_class\.weight", r"decoder.proj_classes"),
    (r"head\.(decoder_norm|mask_norm)\.(weight|bias)", r"decoder.\1.\2"),
    (r"head\." + BLOCK, r"decoder.blocks.\1.\2.\3"),
]
DROPS: Tuple[str, ...] = ()

FAMILY = Family(
    "paddleseg",
    detect=lambda ext, keys, meta: (
        ext in files.PADDLE_EXTS and has_prefix(keys, "head.") and has_prefix(keys, "backbone.")
    ),
    norm_eps=1e-5,
    pos_embed_interp="bicubic",
    torch_layout=False,
    renames=RENAMES,
    drops=DROPS,
)

"""mmpretrain's VisionTransformer (classification, ViT-B16/B32/L16, PyTorch layout): a backbone; its qkv is
timm's fused one, and `layer_scale_init_value` > 0 adds LayerScale."""

from typing import Any, Dict, List, Tuple

import numpy as np

from segmenter.convert import files
from segmenter.convert.families.timm import no_class_pos_row
from segmenter.convert.family import ConversionError, Family, has_prefix
from segmenter.convert.keymaps import Rename

RENAMES: List[Rename] = [
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
DROPS: Tuple[str, ...] = (r"head\..*", r"data_preprocessor\..*")


def _refuse_deit3(state: Dict[str, np.ndarray], overrides: Dict[str, Any], path: str) -> Dict[str, np.ndarray]:
    if no_class_pos_row(state, overrides, path, warn=False):
        raise ConversionError(
            f"'{path}' is mmpretrain's DeiT3 (no position row for the class token). mmpretrain 1.2.0's DeiT3 "
            "layer normalises the MLP input with ln1 and never uses ln2 (deit3.py: `self.ffn(self.ln1(x), ...)`), "
            "so no conversion is both the trained DeiT-III and mmpretrain's forward; convert timm's deit3_* "
            "weights of the same model instead."
        )
    return state


FAMILY = Family(
    "mmpretrain",
    # after MMSeg's rule said no: `backbone.layers.` with fused qkv and no decode head
    detect=lambda ext, keys, meta: ext in files.TORCH_EXTS and has_prefix(keys, "backbone.layers."),
    norm_eps=1e-6,
    pos_embed_interp="bicubic",
    torch_layout=True,
    renames=RENAMES,
    drops=DROPS,
    finish=_refuse_deit3,
)

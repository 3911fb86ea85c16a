"""The official Segmenter (rstrudel/segmenter): `checkpoint.pth` ["model"], PyTorch layout, with the `variant.yml`
of its release beside it for what the weights cannot tell (heads, training size)."""

import os
from typing import Any, Dict, List, Mapping, Tuple

from segmenter.convert import files
from segmenter.convert.family import Family, has_prefix
from segmenter.convert.keymaps import BLOCK, Rename

RENAMES: List[Rename] = [
    (r"encoder\.(cls_token|dist_token|pos_embed)", r"backbone.\1"),
    (r"encoder\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"encoder\." + BLOCK, r"backbone.blocks.\1.\2.\3"),
    (r"encoder\.norm\.(weight|bias)", r"backbone.norm.\1"),
    (r"decoder\.head\.(weight|bias)", r"decoder.head.\1"),
    (r"decoder\.(cls_emb|proj_patch|proj_classes)", r"decoder.\1"),
    (r"decoder\.(proj_dec|decoder_norm|mask_norm)\.(weight|bias)", r"decoder.\1.\2"),
    (r"decoder\." + BLOCK, r"decoder.blocks.\1.\2.\3"),
]
# The ImageNet classifier heads of the encoder are never used for segmentation.
DROPS: Tuple[str, ...] = (r"encoder\.head\.(weight|bias)", r"encoder\.head_dist\.(weight|bias)")


def variant_facts(path: str, meta: Mapping[str, str]) -> Dict[str, Any]:
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


FAMILY = Family(
    "official",
    detect=lambda ext, keys, meta: ext in files.TORCH_EXTS and has_prefix(keys, "encoder."),
    norm_eps=1e-5,
    pos_embed_interp="bilinear",
    torch_layout=True,
    renames=RENAMES,
    drops=DROPS,
    facts=variant_facts,
)

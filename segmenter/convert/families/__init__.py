"""The registry of checkpoint families: one row per family, each defined in its own file here. A new family is a
new file (its table, its detection rule, the few functions only it needs) and one row below."""

from typing import Dict

from segmenter.convert.families import mmpretrain, mmseg, official, ours, paddleseg, timm
from segmenter.convert.family import Family

# In detection order: a file belongs to the first family whose rule matches. A PaddleSeg .pdparams also has our
# `backbone.*` keys, MMSeg v0.x our `backbone.blocks.*`, and a bare ViT .pth is timm's only when no other rule
# (ours: `backbone.*` / `decoder.*`) claims it.
FAMILIES: Dict[str, Family] = {
    f.name: f
    for f in (
        timm.NPZ,
        paddleseg.FAMILY,
        ours.PADDLE,
        ours.SAFETENSORS,
        mmseg.MMSEG0,
        mmseg.MMSEG,
        mmpretrain.FAMILY,
        official.FAMILY,
        ours.TORCH,
        timm.TIMM,
    )
}
FORMATS = tuple(FAMILIES)

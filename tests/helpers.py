"""Small shared builders for the tests."""
from typing import Any, Dict

from segmenter.models import VIT_PRESETS, Segmenter, SegmenterViT


def tiny_vit(preset: str = "tiny", depth: int = 1, patch_size: int = 16, img_size: int = 32, **kw: Any) -> SegmenterViT:
    """A preset's width and heads with few blocks, so tests stay fast."""
    embed_dim, _, num_heads = VIT_PRESETS[preset]
    return SegmenterViT(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                        num_heads=num_heads, **kw)


def decoder_cfg(name: str, d_model: int, **kw: Any) -> Dict[str, Any]:
    if name == "linear":
        return {"name": "linear"}
    return {"name": "mask_transformer", "n_layers": 2, "d_model": d_model, "n_heads": max(1, d_model // 64), **kw}


def tiny_segmenter(decoder: str = "linear", num_classes: int = 5, preset: str = "tiny", **vit_kw: Any) -> Segmenter:
    vit = tiny_vit(preset, **vit_kw)
    return Segmenter(num_classes, vit, decoder_cfg(decoder, vit.embed_dim))

"""Paddle models; importing registers SegmenterViT (BACKBONES), Segmenter and UPerNetViT (MODELS)."""

from segmenter.models.linear_head import DecoderLinear
from segmenter.models.mask_transformer import MaskTransformer
from segmenter.models.segmenter import DECODERS, Segmenter, build_decoder
from segmenter.models.upernet import UPerNetViT
from segmenter.models.vit import PATCH_SIZES, VIT_PRESETS, SegmenterViT

__all__ = [
    "DECODERS",
    "DecoderLinear",
    "MaskTransformer",
    "PATCH_SIZES",
    "Segmenter",
    "SegmenterViT",
    "UPerNetViT",
    "VIT_PRESETS",
    "build_decoder",
]

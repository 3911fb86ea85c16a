"""Paddle Segmenter models; importing registers SegmenterViT (BACKBONES) and Segmenter (MODELS)."""
from segmenter.models.linear_head import DecoderLinear
from segmenter.models.mask_transformer import MaskTransformer
from segmenter.models.segmenter import DECODERS, Segmenter, build_decoder
from segmenter.models.vit import PATCH_SIZES, VIT_PRESETS, SegmenterViT

__all__ = ["DECODERS", "DecoderLinear", "MaskTransformer", "PATCH_SIZES", "Segmenter", "SegmenterViT",
           "VIT_PRESETS", "build_decoder"]

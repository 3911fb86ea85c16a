"""PyTorch twin of the Paddle Segmenter (`segmenter/models/`): same files, classes, attribute names and
parameter keys, built from the same YAML by `build_model(config)`. Imports torch only, never Paddle."""

from segmenter.pytorch.config import build_model, load_config
from segmenter.pytorch.linear_head import DecoderLinear
from segmenter.pytorch.mask_transformer import MaskTransformer
from segmenter.pytorch.segmenter import DECODERS, Segmenter, build_decoder
from segmenter.pytorch.upernet import UPerNetViT
from segmenter.pytorch.vit import PATCH_SIZES, VIT_PRESETS, SegmenterViT

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
    "build_model",
    "load_config",
]

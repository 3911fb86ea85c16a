"""Weight conversion between our Paddle and PyTorch models, .safetensors, and the released checkpoints
(official Segmenter, PaddleSeg, timm, Google .npz, MMSegmentation, mmpretrain): detect the family -> rename by
its table -> check against the architecture (arch.py) -> write (files.py). The pipeline is core.py; each family
is a file under families/ and a row of its registry. Needs neither Paddle nor, except for .pth files, torch."""

from segmenter.convert.arch import Arch, expected_shapes, infer_arch, model_config
from segmenter.convert.core import (
    FORMATS,
    ConversionError,
    Converted,
    convert,
    detect_format,
    is_linear_weight,
    load_weights,
    save_weights,
    strip_prefix,
    to_canonical,
    to_layout,
    to_mmseg,
)
from segmenter.convert.files import SafeUnpickler, UnsafeFileError, read_pdparams

__all__ = [
    "Arch",
    "ConversionError",
    "Converted",
    "FORMATS",
    "SafeUnpickler",
    "UnsafeFileError",
    "convert",
    "detect_format",
    "expected_shapes",
    "infer_arch",
    "is_linear_weight",
    "load_weights",
    "model_config",
    "read_pdparams",
    "save_weights",
    "strip_prefix",
    "to_canonical",
    "to_layout",
    "to_mmseg",
]

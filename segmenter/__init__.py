"""Segmenter as a PaddleSeg plugin: importing this package registers every component with PaddleSeg's managers."""
from segmenter import runtime

runtime.configure_at_import()  # Paddle CPU threads + MKL AVX2 path on AMD, before any matmul runs

from segmenter import models  # noqa: F401,E402  (registers SegmenterViT, Segmenter)

__version__ = "0.1.0"

"""Segmenter as a PaddleSeg plugin: importing this package registers every component with PaddleSeg's managers.

With Paddle and PaddleSeg installed (the normal case) the Paddle models are imported, which registers them.
A PyTorch-only install can still use `segmenter.pytorch` and `segmenter.convert`, which never import Paddle.
"""
import importlib.util

if importlib.util.find_spec("paddle") is not None and importlib.util.find_spec("paddleseg") is not None:
    from segmenter import models  # noqa: F401  (registers SegmenterViT, Segmenter)

__version__ = "0.1.0"

"""Segmenter as a PaddleSeg plugin: importing this package registers every component with PaddleSeg's managers.

With Paddle and PaddleSeg installed (the normal case) the Paddle models are imported, which registers them.
A PyTorch-only install can still use `segmenter.pytorch` and `segmenter.convert`, which never import Paddle.
"""
try:
    from segmenter import models  # noqa: F401  (registers SegmenterViT, Segmenter)
except ModuleNotFoundError as e:  # only a missing Paddle/PaddleSeg is tolerated; any other failure surfaces
    if (e.name or "").split(".")[0] not in ("paddle", "paddleseg"):
        raise

__version__ = "0.1.0"

"""Segmenter as a PaddleSeg plugin: importing this package registers every component with PaddleSeg's managers."""
from segmenter import models  # noqa: F401  (registers SegmenterViT, Segmenter)
from segmenter import datasets, engine  # noqa: F401  (registers SegmenterShapes, SegmenterCrossEntropyLoss)

__version__ = "0.1.0"

"""Datasets PaddleSeg lacks: the procedurally generated quickstart shapes."""
from segmenter.datasets.shapes import SegmenterShapes  # noqa: F401

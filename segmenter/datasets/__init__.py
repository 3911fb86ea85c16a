"""Datasets PaddleSeg lacks: the procedurally generated quickstart shapes."""
from segmenter.datasets.shapes import SegmenterShapes  # noqa: F401
from segmenter.datasets.file_list import SegmenterFileList  # noqa: F401

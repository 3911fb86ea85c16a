"""Datasets PaddleSeg lacks (the procedurally generated quickstart shapes, a checked file list) and MMSeg's train
transforms (registered as MMSegRandomResize, MMSegRandomCrop, MMSegRandomFlip, MMSegPhotoMetricDistortion) and its
test-time MMSegResize."""

from segmenter.datasets import mmseg_pipeline
from segmenter.datasets.file_list import SegmenterFileList
from segmenter.datasets.shapes import SegmenterShapes

__all__ = ["SegmenterShapes", "SegmenterFileList", "mmseg_pipeline"]

"""Datasets PaddleSeg lacks (the procedurally generated quickstart shapes, a checked file list) and MMSeg's train
transforms (registered as MMSegRandomResize, MMSegRandomCrop, MMSegRandomFlip, MMSegPhotoMetricDistortion)."""
from segmenter.datasets.shapes import SegmenterShapes  # noqa: F401
from segmenter.datasets.file_list import SegmenterFileList  # noqa: F401
from segmenter.datasets import mmseg_pipeline  # noqa: F401

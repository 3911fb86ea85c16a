"""Training and evaluation engine that runs on paddle 3 (PaddleSeg 2.8's loops do not)."""

from segmenter.engine.evaluate import evaluate  # noqa: F401
from segmenter.engine.losses import SegmenterCrossEntropyLoss  # noqa: F401
from segmenter.engine.train import train  # noqa: F401

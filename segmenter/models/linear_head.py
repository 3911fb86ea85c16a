"""Linear decoder: one Linear(d_encoder, num_classes) per patch token (Paddle)."""

from typing import Tuple

import paddle
import paddle.nn as nn

from segmenter.models.layers import Linear
from segmenter.models.vit import init_weights


class DecoderLinear(nn.Layer):
    """
    The linear decoder of Segmenter: per-patch class scores from the encoder tokens.

    Args:
        num_classes (int): Number of classes.
        d_encoder (int): Width of the encoder tokens.
    """

    def __init__(self, num_classes: int, d_encoder: int):
        super().__init__()
        self.num_classes = num_classes
        self.head = Linear(d_encoder, num_classes)
        self.apply(init_weights)

    def forward(self, x: paddle.Tensor, grid: Tuple[int, int]) -> paddle.Tensor:
        """[B, N, D] patch tokens on a gh x gw grid -> [B, num_classes, gh, gw]."""
        gh, gw = grid
        x = self.head(x)  # [B, N, n_cls]
        return x.transpose([0, 2, 1]).reshape([x.shape[0], self.num_classes, gh, gw])  # -> [B, n_cls, gh, gw]

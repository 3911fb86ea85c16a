"""Linear decoder: one Linear(d_encoder, num_classes) per patch token (PyTorch)."""

from typing import Tuple

import torch
import torch.nn as nn

from segmenter.pytorch.layers import Linear
from segmenter.pytorch.vit import init_weights


class DecoderLinear(nn.Module):
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

    def forward(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """[B, N, D] patch tokens on a gh x gw grid -> [B, num_classes, gh, gw]."""
        gh, gw = grid
        x = self.head(x)  # [B, N, n_cls]
        return x.transpose(1, 2).reshape(x.shape[0], self.num_classes, gh, gw)  # -> [B, n_cls, gh, gw]

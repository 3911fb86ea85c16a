"""FCNHead (MMSeg): `num_convs` 3x3 conv modules, dropout and a 1x1 classifier; UPerNet's auxiliary head (PyTorch)."""

import torch
import torch.nn as nn

from segmenter.pytorch.conv import ConvModule


class FCNHead(nn.Module):
    """
    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the input map.
        channels (int, optional): Width of the conv modules. Default: 256.
        num_convs (int, optional): Number of 3x3 conv modules (0: the classifier alone). Default: 1.
        dropout (float, optional): Channel dropout before the classifier. Default: 0.1.
        in_index (int, optional): Which of the backbone's (or neck's) maps the head reads. Default: -1.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        channels: int = 256,
        num_convs: int = 1,
        dropout: float = 0.1,
        in_index: int = -1,
    ):
        super().__init__()
        self.in_index = in_index
        self.convs = nn.Sequential(
            *[ConvModule(in_channels if i == 0 else channels, channels, 3) for i in range(num_convs)]
        )
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels if num_convs else in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_channels, h, w] -> [B, num_classes, h, w]."""
        return self.conv_seg(self.dropout(self.convs(x)))

"""UPerHead (Xiao et al., UPerNet, ECCV 2018) as MMSeg builds it: PPM on the last map + FPN (PyTorch)."""

from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segmenter.pytorch.conv import ConvModule
from segmenter.pytorch.segmenter import upsample_bilinear


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize, align_corners=False (the product form also gets outputs of size 1 right in Paddle)."""
    return upsample_bilinear(x, [int(size[0]), int(size[1])])


class UPerHead(nn.Module):
    """
    Pyramid pooling on the last map, a top-down FPN over all maps, their fusion, dropout and a 1x1 classifier.

    Args:
        num_classes (int): Number of classes.
        in_channels (list): Channels of each input map, finest first.
        channels (int, optional): Width of every conv module. Default: 512.
        pool_scales (list, optional): Output sizes of the pyramid pooling. Default: [1, 2, 3, 6].
        dropout (float, optional): Channel dropout before the classifier. Default: 0.1.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: List[int],
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.in_channels = list(in_channels)
        self.pool_scales = list(pool_scales)
        self.psp_modules = nn.ModuleList([ConvModule(self.in_channels[-1], channels, 1) for _ in self.pool_scales])
        self.bottleneck = ConvModule(self.in_channels[-1] + len(self.pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList([ConvModule(c, channels, 1) for c in self.in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3) for _ in self.in_channels[:-1]])
        self.fpn_bottleneck = ConvModule(len(self.in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool the last map to each scale, convolve, upsample back, concatenate with it and fuse."""
        size = x.shape[2:]
        pooled = [
            resize(conv(F.adaptive_avg_pool2d(x, s)), size) for s, conv in zip(self.pool_scales, self.psp_modules)
        ]
        return self.bottleneck(torch.cat([x] + pooled, dim=1))  # [B, C + n * ch, h, w] -> [B, ch, h, w]

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Maps [B, C_i, h_i, w_i], finest first -> logits [B, num_classes, h_0, w_0]."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"UPerHead: got {len(inputs)} maps for in_channels={self.in_channels}.")
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: add the coarser level, upsampled
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        outs = [outs[0]] + [resize(o, outs[0].shape[2:]) for o in outs[1:]]
        x = self.fpn_bottleneck(torch.cat(outs, dim=1))  # [B, n * ch, h_0, w_0] -> [B, ch, h_0, w_0]
        return self.conv_seg(self.dropout(x))

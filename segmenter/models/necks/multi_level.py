"""MultiLevelNeck (MMSeg): same-width ViT maps rescaled into a pyramid for UPerHead (Paddle)."""

from typing import List, Sequence

import paddle
import paddle.nn as nn

from segmenter.models.conv import ConvModule
from segmenter.models.segmenter import separable_product
from segmenter.resample import bilinear_weights_by_scale


def rescale_bilinear(x: paddle.Tensor, scale: float) -> paddle.Tensor:
    """F.interpolate(x, scale_factor=scale, mode="bilinear") as PyTorch (and so MMSeg) computes it, as two matmuls.

    Paddle's kernel steps by n_in / n_out instead of 1 / scale, and copies pixel 0 into an output of size 1
    (a 2x2 map at scale 0.5 gave its corner, not the mean: 0.076 max|diff| in the UPerNet logits).
    """
    a_h = paddle.to_tensor(bilinear_weights_by_scale(x.shape[2], scale), dtype=x.dtype)  # [h * s, h]
    a_w = paddle.to_tensor(bilinear_weights_by_scale(x.shape[3], scale), dtype=x.dtype)  # [w * s, w]
    return separable_product(x, a_h, a_w)  # [B, C, h, w] -> [B, C, hs, ws]


class MultiLevelNeck(nn.Layer):
    """
    A 1x1 lateral conv per input, bilinear rescale by `scales[i]`, then a 3x3 conv; no norm, no activation.

    Args:
        in_channels (list): Channels of each input map.
        out_channels (int): Channels of every output map.
        scales (list, optional): Rescale factor of each output. Default: [4, 2, 1, 0.5].
    """

    def __init__(self, in_channels: List[int], out_channels: int, scales: Sequence[float] = (4, 2, 1, 0.5)):
        super().__init__()
        self.in_channels = list(in_channels)
        self.scales = [float(s) for s in scales]
        self.lateral_convs = nn.LayerList(
            [ConvModule(c, out_channels, 1, norm=False, act=False) for c in self.in_channels]
        )
        self.convs = nn.LayerList(
            [ConvModule(out_channels, out_channels, 3, norm=False, act=False) for _ in self.scales]
        )

    def forward(self, inputs: Sequence[paddle.Tensor]) -> List[paddle.Tensor]:
        """len(in_channels) maps [B, C_i, h, w] -> len(scales) maps [B, out, h * s, w * s]."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f"MultiLevelNeck: got {len(inputs)} maps for in_channels={self.in_channels}; "
                f"set backbone.out_indices to {len(self.in_channels)} blocks."
            )
        x = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        if len(x) == 1:  # one input feeds every scale, as in MMSeg
            x = x * len(self.scales)
        return [self.convs[i](rescale_bilinear(x[i], s)) for i, s in enumerate(self.scales)]

"""Conv -> BatchNorm -> ReLU, the unit MMSeg's necks and dense heads are built from (Paddle)."""

import paddle
import paddle.nn as nn


class ConvModule(nn.Layer):
    """MMCV's ConvModule as MMSeg's UPerHead, FCNHead and MultiLevelNeck use it: a square conv with 'same'
    padding, then optional BatchNorm (eps 1e-5; the conv then has no bias) and optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias_attr=False if norm else None
        )
        # Paddle's momentum 0.9 is torch's 0.1 (Paddle weighs the running value, torch the batch value).
        self.bn = nn.BatchNorm2D(out_channels, momentum=0.9, epsilon=1e-5) if norm else nn.Identity()
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.act(self.bn(self.conv(x)))

"""Conv -> BatchNorm -> ReLU, the unit MMSeg's necks and dense heads are built from (PyTorch)."""

import torch
import torch.nn as nn


class ConvModule(nn.Module):
    """MMCV's ConvModule as MMSeg's UPerHead, FCNHead and MultiLevelNeck use it: a square conv with 'same'
    padding, then optional BatchNorm (eps 1e-5; the conv then has no bias) and optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm)
        # Paddle's momentum 0.9 is torch's 0.1 (Paddle weighs the running value, torch the batch value).
        self.bn = nn.BatchNorm2d(out_channels, momentum=0.1, eps=1e-5) if norm else nn.Identity()
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

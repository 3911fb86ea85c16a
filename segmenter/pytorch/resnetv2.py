"""The ResNetV2 stem of the hybrid ViTs (PyTorch): timm's `vit_*_r50_*`, `vit_*_r26_*` and `vit_tiny_r_*`, as the
original R50+ViT (Dosovitskiy et al., 2021) built it. Weight-standardised convs with TensorFlow "SAME" padding,
GroupNorm 32 + ReLU, no pre-activation; parameter names follow timm's `patch_embed.backbone.*`."""

import math
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# Output widths of the ResNet stages; each bottleneck's inner width is a quarter of its stage's.
STAGE_WIDTHS = (256, 512, 1024, 2048)
STEM_WIDTH = 64
STEM_STRIDE = 4  # the 7x7/2 conv and the 3x3/2 max-pool


def same_pad(x: torch.Tensor, kernel_size: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow's "SAME" padding, from the input size: the output is ceil(H / stride), the odd pixel bottom/right."""
    H, W = x.shape[2], x.shape[3]
    pad_h = max((math.ceil(H / stride) - 1) * stride + kernel_size - H, 0)
    pad_w = max((math.ceil(W / stride) - 1) * stride + kernel_size - W, 0)
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(
        x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], value=value
    )  # [left, right, top, bottom]


class StdConv2dSame(nn.Module):
    """Conv without bias whose kernel is standardised in every forward (per output channel: zero mean, unit biased
    variance, eps inside the root), with "SAME" padding. The stored weight is the raw kernel, as trained."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, eps: float = 1e-8):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = same_pad(x, self.kernel_size, self.stride)
        w = self.weight.reshape(self.weight.shape[0], -1)  # [O, I, k, k] -> [O, I * k * k]
        mean = w.mean(dim=1, keepdim=True)
        var = ((w - mean) ** 2).mean(dim=1, keepdim=True)  # biased, as a batch norm's batch statistics
        w = ((w - mean) / torch.sqrt(var + self.eps)).reshape(self.weight.shape)  # -> [O, I, k, k]
        return F.conv2d(x, w, stride=self.stride)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm (32 groups, eps 1e-5, affine) followed by ReLU unless `act` is False."""

    def __init__(self, num_channels: int, act: bool = True, num_groups: int = 32, eps: float = 1e-5):
        super().__init__(num_groups, num_channels, eps=eps)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class MaxPool2dSame(nn.Module):
    """Max-pool with "SAME" padding; pads with -inf so a padded pixel never wins."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = same_pad(x, self.kernel_size, self.stride, value=-float("inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class Stem(nn.Module):
    """7x7/2 standardised conv -> GroupNorm + ReLU -> 3x3/2 max-pool: [B, C, H, W] -> [B, 64, H/4, W/4]."""

    def __init__(self, in_channels: int, out_channels: int = STEM_WIDTH):
        super().__init__()
        self.conv = StdConv2dSame(in_channels, out_channels, 7, stride=2)
        self.norm = GroupNormAct(out_channels)
        self.pool = MaxPool2dSame(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.norm(self.conv(x)))


class DownsampleConv(nn.Module):
    """The projection shortcut of a stage's first block: 1x1 standardised conv (strided) -> GroupNorm, no ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = StdConv2dSame(in_channels, out_channels, 1, stride=stride)
        self.norm = GroupNormAct(out_channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """Post-activation bottleneck (ResNet v1.5: the stride on the 3x3): 1x1 -> 3x3 -> 1x1, ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, downsample: bool):
        super().__init__()
        mid = out_channels // 4
        self.downsample = DownsampleConv(in_channels, out_channels, stride) if downsample else None
        self.conv1 = StdConv2dSame(in_channels, mid, 1)
        self.norm1 = GroupNormAct(mid)
        self.conv2 = StdConv2dSame(mid, mid, 3, stride=stride)
        self.norm2 = GroupNormAct(mid)
        self.conv3 = StdConv2dSame(mid, out_channels, 1)
        self.norm3 = GroupNormAct(out_channels, act=False)
        self.act3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return self.act3(x + shortcut)


class ResNetStage(nn.Module):
    """`depth` bottlenecks; the first one strides and projects the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(
            *[
                Bottleneck(in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1, i == 0)
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2(nn.Module):
    """Stem + one stage per entry of `layers` (the first at stride 4, each next one halving the map)."""

    def __init__(self, layers: List[int], in_channels: int):
        super().__init__()
        self.stem = Stem(in_channels)
        widths = [STEM_WIDTH] + list(STAGE_WIDTHS[: len(layers)])
        self.stages = nn.Sequential(
            *[ResNetStage(widths[i], widths[i + 1], 1 if i == 0 else 2, d) for i, d in enumerate(layers)]
        )
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def stem_geometry(layers: List[int]) -> Tuple[int, int]:
    """(stride, channels) of the map a ResNetV2 with these stages (none: the stem alone) produces."""
    if len(layers) > len(STAGE_WIDTHS):
        raise ValueError(
            f"SegmenterViT: stem_layers={list(layers)}, but a ResNetV2 has at most {len(STAGE_WIDTHS)} "
            f"stages; give one bottleneck count per stage, e.g. [3, 4, 9] (R50, stride 16)."
        )
    if not layers:
        return STEM_STRIDE, STEM_WIDTH
    return STEM_STRIDE * 2 ** (len(layers) - 1), STAGE_WIDTHS[len(layers) - 1]


class HybridEmbed(nn.Module):
    """ResNetV2 (or its stem alone, when `layers` is empty) -> patch_size conv to embed_dim: [B, C, H, W] ->
    [B, H/s * W/s, D] with s = stem stride * patch_size. timm's HybridEmbed at the same names."""

    def __init__(self, layers: List[int], patch_size: int, in_channels: int, embed_dim: int, bias: bool = True):
        super().__init__()
        self.stem_stride, width = stem_geometry(layers)
        self.backbone = ResNetV2(layers, in_channels) if layers else Stem(in_channels)
        self.proj = nn.Conv2d(width, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.backbone(x))  # [B, D, H/s, W/s]
        return x.flatten(2).transpose(1, 2)  # [B, D, N] -> [B, N, D]

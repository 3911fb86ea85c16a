"""Resampling of ViT position embeddings to another patch grid (PyTorch twin of models/pos_embed.py)."""

from typing import Tuple

import torch
import torch.nn.functional as F

from segmenter.resample import POS_EMBED_INTERPOLATIONS


def resample_pos_embed(
    pos_embed: torch.Tensor,
    old_grid: Tuple[int, int],
    new_grid: Tuple[int, int],
    num_prefix_tokens: int,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Resample the grid part of `pos_embed` [1, prefix + Ho*Wo, C] to [1, prefix + Hn*Wn, C].

    Prefix tokens (class, distillation) keep their embeddings. `mode` is `bilinear` (the official
    Segmenter), `bicubic` (PaddleSeg, MMSeg, mmpretrain) or `bicubic_antialias` (timm), all with
    align_corners=False.
    """
    if mode not in POS_EMBED_INTERPOLATIONS:
        raise ValueError(f"pos_embed interpolation '{mode}' is not supported; use one of {POS_EMBED_INTERPOLATIONS}.")
    old_h, old_w = old_grid
    new_h, new_w = new_grid
    if (old_h, old_w) == (new_h, new_w):
        return pos_embed
    C = pos_embed.shape[-1]
    if pos_embed.shape[1] != num_prefix_tokens + old_h * old_w:
        raise ValueError(
            f"pos_embed has {pos_embed.shape[1]} tokens, expected {num_prefix_tokens} prefix + "
            f"{old_h}x{old_w} grid = {num_prefix_tokens + old_h * old_w}."
        )
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    grid = grid.reshape(1, old_h, old_w, C).permute(0, 3, 1, 2)  # [1, N, C] -> [1, C, Ho, Wo]
    aa = mode == "bicubic_antialias"
    grid = F.interpolate(grid, size=[new_h, new_w], mode="bicubic" if aa else mode, align_corners=False, antialias=aa)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, C)  # [1, C, Hn, Wn] -> [1, N', C]
    return torch.cat([prefix, grid], dim=1)

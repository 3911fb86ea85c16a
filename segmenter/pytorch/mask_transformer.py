"""Mask-transformer decoder of Segmenter (PyTorch), computed as in the paper's code."""

from typing import List, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from segmenter.pytorch.layers import Block, Linear, run_block
from segmenter.pytorch.vit import _trunc_normal, init_weights


class MaskTransformer(nn.Module):
    """
    Class embeddings are appended after the patch tokens, both go through `n_layers` transformer blocks,
    and each patch's mask score for a class is the cosine similarity of the projected, L2-normalised patch
    and class features, followed by a LayerNorm over classes.

    Args:
        num_classes (int): Number of classes.
        d_encoder (int): Width of the encoder tokens.
        n_layers (int, optional): Decoder blocks. Default: 2.
        d_model (int, optional): Decoder width (the official code uses the encoder's). Default: 384.
        n_heads (int, optional): Decoder attention heads (official: d_model // 64). Default: 6.
        mlp_ratio (float, optional): MLP hidden width over d_model. Default: 4.
        dropout (float, optional): Dropout in attention and MLP (official trains with 0.1). Default: 0.0.
        drop_path_rate (float, optional): Stochastic depth over the decoder blocks. Default: 0.0.
        qkv_bias (bool, optional): Bias on qkv; official checkpoints need True, PaddleSeg's False. Default: True.
        norm_eps (float, optional): Epsilon of every decoder LayerNorm. Default: 1e-5.
    """

    def __init__(
        self,
        num_classes: int,
        d_encoder: int,
        n_layers: int = 2,
        d_model: int = 384,
        n_heads: int = 6,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.n_layers = n_layers
        self.scale = d_model**-0.5  # only used to initialise the projections, as in the official code
        dpr = np.linspace(0, drop_path_rate, n_layers).tolist()
        self.blocks = nn.ModuleList(
            [Block(d_model, n_heads, mlp_ratio, qkv_bias, dropout, dropout, dpr[i], norm_eps) for i in range(n_layers)]
        )
        self.cls_emb = nn.Parameter(torch.zeros(1, num_classes, d_model))
        _trunc_normal(self.cls_emb)
        self.proj_dec = Linear(d_encoder, d_model)
        self.proj_patch = nn.Parameter(self.scale * torch.randn(d_model, d_model))
        self.proj_classes = nn.Parameter(self.scale * torch.randn(d_model, d_model))
        self.decoder_norm = nn.LayerNorm(d_model, eps=norm_eps)
        self.mask_norm = nn.LayerNorm(num_classes, eps=norm_eps)
        self.apply(init_weights)

    def forward(
        self, x: torch.Tensor, grid: Tuple[int, int], return_attn: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        """[B, N, D_enc] patch tokens on a gh x gw grid -> masks [B, num_classes, gh, gw]."""
        gh, gw = grid
        B = x.shape[0]
        x = self.proj_dec(x)
        x = torch.cat([x, self.cls_emb.expand(B, -1, -1)], dim=1)  # [B, N + n_cls, d]
        attns = [] if return_attn else None
        for blk in self.blocks:
            x = run_block(blk, x, attns)
        x = self.decoder_norm(x)
        patches, classes = x[:, : -self.num_classes], x[:, -self.num_classes :]
        patches = torch.matmul(patches, self.proj_patch)
        classes = torch.matmul(classes, self.proj_classes)
        # plain L2 normalisation without eps, as the official code (F.normalize would add one)
        patches = patches / patches.norm(p=2, dim=-1, keepdim=True)
        classes = classes / classes.norm(p=2, dim=-1, keepdim=True)
        masks = torch.matmul(patches, classes.transpose(1, 2))  # [B, N, n_cls]
        masks = self.mask_norm(masks)
        masks = masks.transpose(1, 2).reshape(B, self.num_classes, gh, gw)  # -> [B, n_cls, gh, gw]
        return (masks, attns) if return_attn else masks

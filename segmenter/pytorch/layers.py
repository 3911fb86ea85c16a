"""Transformer building blocks shared by the ViT encoder and the mask-transformer decoder (PyTorch).

Mirrors `segmenter/models/layers.py` line for line; only the framework spelling differs.
"""

from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample: zero a whole residual branch with probability `drop_prob`."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)  # one draw per sample, broadcast over tokens and channels
    mask = torch.bernoulli(torch.full(shape, keep, dtype=x.dtype, device=x.device))
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016) on the residual branch."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Linear(nn.Linear):
    """nn.Linear. The Paddle twin's Linear writes its CPU training backward out as three products (paddle's bias
    gradient was a single-threaded sum); torch's own backward computes the bias gradient that way already."""


class Mlp(nn.Module):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout, as in the official FeedForward."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.act = nn.GELU()  # erf GELU, not the tanh approximation
        self.fc2 = Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(
                f"Attention: dim={dim} is not divisible by num_heads={num_heads}; "
                f"choose num_heads among the divisors of {dim}."
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Returns the attended tokens, plus the attention weights [B, heads, N, N] if `return_attn`."""
        # Heads are split and stacked into contiguous tensors rather than reshaped and transposed into views:
        # with batch > 1 paddle 3.3's CPU kernels on such 4-D strided views (scale, matmul, reshape) ran up to
        # 20x slower (q@k^T 30 vs 19 ms at batch 2), and indexing a [3, B, heads, N, hd] view wrote a
        # zero-filled full-size gradient per index in the backward (docs/benchmarks/history.md, "Where the time goes").
        h = self.num_heads
        parts = self.qkv(x).chunk(3 * h, dim=-1)  # [B, N, 3C] -> 3 * heads x [B, N, hd]
        q, k, v = (torch.stack(parts[i * h : (i + 1) * h], dim=1) for i in range(3))  # 3 x [B, heads, N, hd]
        if not return_attn:
            # Fused attention, 12% faster forward and 10% faster forward+backward for ViT-S at 1025 tokens on CPU.
            # q is scaled first, as in the explicit form: it keeps the twin parity tests within their limits,
            # which SDPA's own scaling had exceeded (ViT-B mask-decoder logits relL2 1.04e-5 > 1e-5).
            # Paddle keeps the explicit product: its F.scaled_dot_product_attention is no faster on CPU; it attends
            # in query chunks (chunked_attention) past ATTN_CHUNK tokens where torch's fused CPU kernel works in
            # blocks, so neither holds the [N, N] map at inference.
            x = F.scaled_dot_product_attention(
                q * self.scale, k, v, scale=1.0, dropout_p=self.attn_drop.p if self.training else 0.0
            )
            x = torch.cat(x.unbind(1), dim=-1)  # [B, heads, N, hd] -> heads x [B, N, hd] -> [B, N, C]
            return self.proj_drop(self.proj(x))
        attn = torch.matmul(q * self.scale, k.transpose(-2, -1))  # [B, heads, N, N]
        attn = F.softmax(attn, dim=-1)
        attn = self.attn_drop(attn)
        x = torch.matmul(attn, v)  # [B, heads, N, hd]
        x = torch.cat(x.unbind(1), dim=-1)  # [B, heads, N, hd] -> heads x [B, N, hd] -> [B, N, C]
        x = self.proj_drop(self.proj(x))
        return (x, attn) if return_attn else x


class LayerScale(nn.Module):
    """Learned per-channel scale of a residual branch (CaiT / DeiT-III): x * gamma, gamma starting at `init_value`."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + drop_path(ls1(attn(norm1(x)))), then x + drop_path(ls2(mlp(norm2(x)))).

    ls1 / ls2 are LayerScale with `layer_scale_init`, or identities when it is None (the official Segmenter).
    `mlp_drop` sets the MLP's dropout apart from `dropout` (MMSeg v0.13's ViT feeds its drop-path rate there).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
        layer_scale_init: Optional[float] = None,
        mlp_drop: Optional[float] = None,
    ):
        super().__init__()
        if layer_scale_init is not None and not layer_scale_init > 0:
            raise ValueError(
                f"backbone.layer_scale_init: {layer_scale_init!r} is not a layer scale; write a positive "
                f"value (e.g. 1e-5), or null for none (what timm's and mmpretrain's 0 means)."
            )
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, dropout)
        # None: no parameters at all, so weights saved without layer scale load strictly.
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout if mlp_drop is None else mlp_drop)
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init is not None else nn.Identity()

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Returns the block output, plus its attention weights if `return_attn`."""
        y = self.attn(self.norm1(x), return_attn)
        attn = None
        if return_attn:
            y, attn = y
        x = x + self.drop_path(self.ls1(y))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return (x, attn) if return_attn else x


def run_block(block: "Block", x, attns: Optional[list]):
    """x through one block; when `attns` is a list (return_attn), the block's attention weights are appended."""
    if attns is None:
        return block(x)
    x, attn = block(x, return_attn=True)
    attns.append(attn)
    return x

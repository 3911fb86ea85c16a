"""Transformer building blocks shared by the ViT encoder and the mask-transformer decoder (Paddle).

Mirrors `segmenter/pytorch/layers.py` line for line; only the framework spelling differs.
"""

import contextlib
import os
from typing import Iterator, Optional, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer


def drop_path(x: paddle.Tensor, drop_prob: float, training: bool) -> paddle.Tensor:
    """Stochastic depth per sample: zero a whole residual branch with probability `drop_prob`."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)  # one draw per sample, broadcast over tokens and channels
    mask = paddle.bernoulli(paddle.full(shape, keep, dtype=x.dtype))
    return x * mask / keep


class DropPath(nn.Layer):
    """Stochastic depth (Huang et al. 2016) on the residual branch."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class _LinearCPU(PyLayer):
    """F.linear with the backward written out: three products, the bias gradient among them ([1, M] ones x dy)."""

    @staticmethod
    def forward(ctx, x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor) -> paddle.Tensor:
        ctx.save_for_backward(x, weight)
        # paddle wants None for an input that asks no gradient (a frozen layer, the first layer's image input)
        ctx.wants = (not x.stop_gradient, not weight.stop_gradient, not bias.stop_gradient)
        return F.linear(x, weight, bias)  # [..., in] -> [..., out]

    @staticmethod
    def backward(ctx, dy: paddle.Tensor) -> Tuple[Optional[paddle.Tensor], ...]:
        x, weight = ctx.saved_tensor()
        want_x, want_w, want_b = ctx.wants
        dy2 = dy.reshape([-1, dy.shape[-1]])  # [M, out], M = the rows of every leading axis
        dx = paddle.matmul(dy, weight, transpose_y=True) if want_x else None  # [..., in]
        dw = paddle.matmul(x.reshape([-1, x.shape[-1]]), dy2, transpose_x=True) if want_w else None  # [in, out]
        db = paddle.matmul(paddle.ones([1, dy2.shape[0]], dy.dtype), dy2).reshape([-1]) if want_b else None
        return dx, dw, db  # db: [1, M] x [M, out]


class Linear(nn.Linear):
    """nn.Linear (the same parameters and values) whose backward in CPU dygraph training is three matrix products.

    Paddle 3.3's CPU backward of F.linear reduced the bias gradient over the rows with a single-threaded sum kernel:
    27 ms of CPU for the fc1 bias of ViT-S at 512x512, batch 2 ([2050, 1536] -> [1536]), 0.4 ms as a product with a
    row of ones, about 0.4 s of a training step's 6 s of CPU (docs/benchmarks.md). Elsewhere (inference, static
    graphs, other devices, no bias) it is nn.Linear.
    """

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if (
            self.bias is None
            or not self.training
            or not paddle.in_dynamic_mode()
            or not paddle.is_grad_enabled()
            or not x.place.is_cpu_place()
        ):
            return super().forward(x)
        return _LinearCPU.apply(x, self.weight, self.bias)


class Mlp(nn.Layer):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout, as in the official FeedForward."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.act = nn.GELU()  # erf GELU, not the tanh approximation
        self.fc2 = Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


ATTN_CHUNK = 1024  # query rows per chunk of chunked_attention, used past 2 * ATTN_CHUNK tokens (768x768 at patch 16)


def chunked_attention(q: paddle.Tensor, k: paddle.Tensor, v: paddle.Tensor, chunk: int) -> paddle.Tensor:
    """softmax(q k^T) v for pre-scaled q, `chunk` query rows at a time: the same rows as the full product (each row's
    softmax needs only its own scores), with at most [B, heads, chunk, N] scores alive. Returns [B, N, C]."""
    outs = []
    for i in range(0, q.shape[2], chunk):
        q_c = q[:, :, i : i + chunk]  # [B, heads, chunk, hd]
        attn = F.softmax(paddle.matmul(q_c, k, transpose_y=True), axis=-1)  # [B, heads, chunk, N]
        outs.append(paddle.matmul(attn, v))  # [B, heads, chunk, hd]
    x = paddle.concat(outs, axis=2)  # [B, heads, N, hd]
    return paddle.concat(x.unbind(1), axis=-1)  # [B, heads, N, hd] -> heads x [B, N, hd] -> [B, N, C]


# Paddle's fused CPU attention kernel (`self_dp_attention`: qkv [B, N, 3, heads, hd] -> [B, N, heads, hd]): blocks of
# 512 queries x 512 keys with an online softmax (the flash-attention scheme), so no [N, N] map is ever held, and
# 3.8-4x faster than the explicit product on ViT-S's shapes (1025 and 2305 tokens, one thread;
# docs/benchmarks/history.md). It has no backward and no GPU kernel, and its inner loops are AVX-512, so it runs
# only at inference (no gradient asked), on the CPU, in float32, on a CPU with avx512f. SEGMENTER_FUSED_ATTENTION=0
# turns it off.
_FUSED = {"dygraph": None, "static": False}  # None: decided on first use; static graphs opt in (fused_attention)


def _fused_kernel_usable() -> bool:
    if _FUSED["dygraph"] is None:
        try:
            from paddle.base import core

            _FUSED["dygraph"] = (
                os.environ.get("SEGMENTER_FUSED_ATTENTION", "1") != "0"
                and hasattr(paddle._legacy_C_ops, "self_dp_attention")
                and bool(core.supports_avx512f())
            )
        except Exception:  # noqa: BLE001 (a paddle without the op or the check: the explicit product)
            _FUSED["dygraph"] = False
    return _FUSED["dygraph"]


@contextlib.contextmanager
def fused_attention(static: bool) -> Iterator[None]:
    """Within it, graphs traced by paddle.jit.to_static use the fused CPU kernel (if `static` and the CPU has it) or
    the explicit product. Outside, traced graphs use the explicit product: an export for a GPU, or for another
    machine's CPU, or for ONNX, must not contain a CPU-only, AVX-512-only op (deploy.export(fused_attention=...))."""
    prev = _FUSED["static"]
    _FUSED["static"] = bool(static) and _fused_kernel_usable()
    try:
        yield
    finally:
        _FUSED["static"] = prev


def fused_attention_applies(x: paddle.Tensor) -> bool:
    """Whether the fused kernel runs for tokens `x` (the caller has checked inference and no attention maps)."""
    if not paddle.in_dynamic_mode():
        return _FUSED["static"] and x.dtype == paddle.float32
    return (
        not paddle.is_grad_enabled() and x.dtype == paddle.float32 and x.place.is_cpu_place() and _fused_kernel_usable()
    )


# A graph traced for oneDNN's bf16 predictor (deploy.export(precision="bf16")) splits the heads by reshape/transpose:
# paddle's oneDNN passes fold those transposes into the matmuls, and matmul and softmax have oneDNN bf16 kernels,
# where `stack` (the explicit product's split) and the fused kernel have none and keep attention in fp32, the larger
# part of the bf16 forward's time at 512x512 (docs/deployment.md, "bf16 inference").
_BF16_GRAPH = {"on": False}


@contextlib.contextmanager
def bf16_graph(on: bool) -> Iterator[None]:
    """Within it (`on`), graphs traced by paddle.jit.to_static attend with transposed_attention."""
    prev = _BF16_GRAPH["on"]
    _BF16_GRAPH["on"] = bool(on)
    try:
        yield
    finally:
        _BF16_GRAPH["on"] = prev


def transposed_attention(qkv: paddle.Tensor, num_heads: int, scale: float) -> paddle.Tensor:
    """softmax(q k^T * scale) v from the qkv projection [B, N, 3C], the heads split by reshape/transpose (q scaled
    first, as in the explicit product); returns [B, N, C]. For traced graphs only (see bf16_graph)."""
    c = qkv.shape[-1] // 3
    t = qkv.reshape([0, 0, 3, num_heads, c // num_heads]).transpose([2, 0, 3, 1, 4])  # -> [3, B, heads, N, hd]
    attn = F.softmax(paddle.matmul(t[0] * scale, t[1], transpose_y=True), axis=-1)  # [B, heads, N, N]
    return paddle.matmul(attn, t[2]).transpose([0, 2, 1, 3]).reshape([0, 0, c])  # [B, heads, N, hd] -> [B, N, C]


def fused_self_attention(qkv: paddle.Tensor, num_heads: int, scale: float) -> paddle.Tensor:
    """softmax(q k^T * scale) v from the qkv projection [B, N, 3C] (q, k, v each heads x hd, as the explicit path
    splits them) by paddle's fused CPU kernel; returns [B, N, C]."""
    c3 = qkv.shape[-1]
    x = qkv.reshape([0, 0, 3, num_heads, c3 // (3 * num_heads)])  # 0: that dimension as it is (a traced batch)
    if paddle.in_dynamic_mode():
        out = paddle._legacy_C_ops.self_dp_attention(x, "alpha", float(scale), "head_number", int(num_heads))
    else:
        out = paddle._C_ops.self_dp_attention(x, float(scale), int(num_heads))
    return out.reshape([0, 0, c3 // 3])


class Attention(nn.Layer):
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
        self.qkv = Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: paddle.Tensor, return_attn: bool = False
    ) -> Union[paddle.Tensor, Tuple[paddle.Tensor, paddle.Tensor]]:
        """Returns the attended tokens, plus the attention weights [B, heads, N, N] if `return_attn`."""
        # Heads are split and stacked into contiguous tensors rather than reshaped and transposed into views:
        # with batch > 1 paddle 3.3's CPU kernels on such 4-D strided views (scale, matmul, reshape) ran up to
        # 20x slower (q@k^T 30 vs 19 ms at batch 2), and indexing a [3, B, heads, N, hd] view wrote a
        # zero-filled full-size gradient per index in the backward (docs/benchmarks/history.md, "Where the time goes").
        h = self.num_heads
        if not (return_attn or self.training) and _BF16_GRAPH["on"] and not paddle.in_dynamic_mode():
            return self.proj_drop(self.proj(transposed_attention(self.qkv(x), h, self.scale)))
        if not (return_attn or self.training) and fused_attention_applies(x):
            return self.proj_drop(self.proj(fused_self_attention(self.qkv(x), h, self.scale)))
        parts = self.qkv(x).chunk(3 * h, axis=-1)  # [B, N, 3C] -> 3 * heads x [B, N, hd]
        q, k, v = (paddle.stack(parts[i * h : (i + 1) * h], axis=1) for i in range(3))  # 3 x [B, heads, N, hd]
        # The explicit product: paddle 3.3's F.scaled_dot_product_attention is a composed fallback on CPU
        # (bit-identical output, the whole [N, N] map held) and no faster in the ViT-S model: equal at batch 1,
        # 7-26% slower at batch 2. Long sequences at inference go through query chunks instead (the twin's fused
        # SDPA), so memory grows as N * ATTN_CHUNK rather than N^2; training and return_attn keep the full map.
        if not (return_attn or self.training) and q.shape[2] > 2 * ATTN_CHUNK:
            return self.proj_drop(self.proj(chunked_attention(q * self.scale, k, v, ATTN_CHUNK)))
        attn = paddle.matmul(q * self.scale, k, transpose_y=True)  # [B, heads, N, N]
        attn = F.softmax(attn, axis=-1)
        attn = self.attn_drop(attn)
        x = paddle.matmul(attn, v)  # [B, heads, N, hd]
        x = paddle.concat(x.unbind(1), axis=-1)  # [B, heads, N, hd] -> heads x [B, N, hd] -> [B, N, C]
        x = self.proj_drop(self.proj(x))
        return (x, attn) if return_attn else x


class LayerScale(nn.Layer):
    """Learned per-channel scale of a residual branch (CaiT / DeiT-III): x * gamma, gamma starting at `init_value`."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = self.create_parameter([dim], default_initializer=nn.initializer.Constant(init_value))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.gamma


class Block(nn.Layer):
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
        self.norm1 = nn.LayerNorm(dim, epsilon=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, dropout)
        # None: no parameters at all, so weights saved without layer scale load strictly.
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, epsilon=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout if mlp_drop is None else mlp_drop)
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init is not None else nn.Identity()

    def forward(
        self, x: paddle.Tensor, return_attn: bool = False
    ) -> Union[paddle.Tensor, Tuple[paddle.Tensor, paddle.Tensor]]:
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

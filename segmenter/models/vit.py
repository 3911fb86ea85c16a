"""ViT encoder for Segmenter (Paddle). Parameter names follow timm; the forward follows the official code."""

from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from segmenter.models.layers import Block, run_block
from segmenter.models.pos_embed import POS_EMBED_INTERPOLATIONS, resample_pos_embed
from segmenter.models.resnetv2 import HybridEmbed, stem_geometry

# name -> (embed_dim, depth, num_heads); mlp_ratio is 4 for all of them.
VIT_PRESETS: Dict[str, Tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
PATCH_SIZES = (8, 16, 32)
# Patches on the map of a hybrid's ResNet stem (timm: 1, or 8 on the stem alone).
HYBRID_PATCH_SIZES = (1, 2, 4, 8)
PATCH_REMAINDERS = ("pad", "drop")
DROP_PATH_MODES = ("stochastic_depth", "mlp_dropout")

_trunc_normal = nn.initializer.TruncatedNormal(std=0.02)
_zeros = nn.initializer.Constant(0.0)
_ones = nn.initializer.Constant(1.0)


def init_weights(layer: nn.Layer) -> None:
    """Official Segmenter init: trunc-normal(0.02) Linear weights, zero biases, unit LayerNorm."""
    if isinstance(layer, nn.Linear):
        _trunc_normal(layer.weight)
        if layer.bias is not None:
            _zeros(layer.bias)
    elif isinstance(layer, nn.LayerNorm):
        _ones(layer.weight)
        _zeros(layer.bias)


def check_image_batch(x: paddle.Tensor, in_channels: int, who: str) -> None:
    """Fail early, and in words, on anything that is not a float [B, C, H, W] batch."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{who} expects a float tensor [B, {in_channels}, H, W]; got shape {list(x.shape)}. "
            f"Add a batch axis with x.unsqueeze(0) or move channels first with x.transpose([0, 3, 1, 2])."
        )
    if not paddle.is_floating_point(x):
        raise TypeError(
            f"{who} expects a float tensor [B, {in_channels}, H, W]; got dtype {x.dtype}. "
            f"Normalise the image and cast it, e.g. x.astype('float32')."
        )


def pad_to_patch(x: paddle.Tensor, patch_size: int) -> paddle.Tensor:
    """Zero-pad bottom/right so H and W are multiples of `patch_size` (the official behaviour)."""
    H, W = x.shape[2], x.shape[3]
    pad_h, pad_w = -H % patch_size, -W % patch_size
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, [0, pad_w, 0, pad_h], value=0.0, data_format="NCHW")  # [left, right, top, bottom]


def crop_to_patch(x: paddle.Tensor, patch_size: int) -> paddle.Tensor:
    """Drop the bottom rows / right columns past the last whole patch (a stride-p conv without padding does)."""
    H, W = x.shape[2], x.shape[3]
    if H < patch_size or W < patch_size:
        raise ValueError(
            f"SegmenterViT(patch_remainder='drop'): an input of {H}x{W} holds no whole {patch_size}x"
            f"{patch_size} patch; give images of at least {patch_size} pixels a side."
        )
    return x[:, :, : H - H % patch_size, : W - W % patch_size]


class PatchEmbed(nn.Layer):
    """Non-overlapping patch_size x patch_size convolution: [B, C, H, W] -> [B, H/p * W/p, D]."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2D(
            in_channels, embed_dim, kernel_size=patch_size, stride=patch_size, bias_attr=None if bias else False
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.proj(x)  # [B, D, H/p, W/p]
        return x.flatten(2).transpose([0, 2, 1])  # [B, D, N] -> [B, N, D]


@manager.BACKBONES.add_component
class SegmenterViT(nn.Layer):
    """
    The ViT encoder of Segmenter (Strudel et al., ICCV 2021): patch embedding, class token (plus a
    distillation token for DeiT), learned position embeddings, pre-norm blocks and a final LayerNorm.

    `forward(x)` returns the tokens after the final norm, [B, prefix + N, embed_dim], like timm's
    forward_features. Any input size works: H and W are zero-padded to a multiple of the patch, and the
    position embeddings are resampled when the patch grid differs from the one of `img_size`.

    With `stem_layers`, the patch embedding is timm's hybrid (R50+ViT, Dosovitskiy et al.): a ResNetV2 of those
    stages makes a stride-s map (s = 4 * 2 ** (stages - 1), or 4 for the stem alone) and a patch_size conv embeds
    it, so a token covers `stride` = s * patch_size pixels, and inputs are padded to a multiple of that.

    Args:
        img_size (int|list, optional): The training size; fixes the grid `pos_embed` is stored at. Default: 512.
        patch_size (int, optional): 8, 16 or 32; with stem_layers, the patch on the stem's map: 1, 2, 4 or 8.
            Default: 16.
        in_channels (int, optional): Image channels. Default: 3.
        embed_dim (int, optional): Token width (tiny 192, small 384, base 768, large 1024). Default: 384.
        depth (int, optional): Number of blocks (12, or 24 for large). Default: 12.
        num_heads (int, optional): Attention heads (3, 6, 12, 16). Default: 6.
        mlp_ratio (float, optional): MLP hidden width over embed_dim. Default: 4.
        qkv_bias (bool, optional): Bias on the fused qkv projection (official and timm: True). Default: True.
        distilled (bool, optional): Add a DeiT distillation token after the class token. Default: False.
        norm_eps (float, optional): LayerNorm epsilon: official and PaddleSeg 1e-5, timm 1e-6. Default: 1e-5.
        pos_embed_interp (str, optional): `bilinear` (official), `bicubic` (PaddleSeg, MMSeg) or
            `bicubic_antialias` (timm). Default: bilinear.
        drop_rate (float, optional): Dropout after the position embedding and inside blocks. Default: 0.0.
        attn_drop_rate (float, optional): Dropout on attention weights. Default: 0.0.
        drop_path_rate (float, optional): Stochastic depth, linearly increasing over blocks. Default: 0.0.
        drop_path_mode (str, optional): What drop_path_rate drives: `stochastic_depth`, or `mlp_dropout` (MMSeg
            v0.13/v0.14's ViT passes each block's rate to its MLP's dropout and has no stochastic depth).
            Default: stochastic_depth.
        patch_bias (bool, optional): Bias on the patch-embedding conv (MMSeg's ViT: False). Default: True.
        final_norm (bool, optional): LayerNorm after the last block (MMSeg's UPerNet ViT rows: False). Default: True.
        layer_scale_init (float, optional): Add LayerScale (`blocks.i.ls1.gamma`, `ls2.gamma`) to every block,
            starting at this value (timm's init_values, mmpretrain's layer_scale_init_value: DeiT-III 1e-6);
            None adds none, as in the official Segmenter. Default: None.
        out_indices (list, optional): Blocks whose outputs `forward` returns as maps [B, D, H/p, W/p] (MMSeg's
            dense heads, e.g. [2, 5, 8, 11]; negative counts from the end); None returns the tokens. Default: None.
        with_cls_token (bool, optional): Keep the class token in the blocks (MMSeg drops it after adding the
            position embedding when False). Default: True.
        output_cls_token (bool, optional): With out_indices, each output is [map, class token [B, D]]. Default: False.
        stem_layers (list, optional): Bottlenecks per ResNetV2 stage of a hybrid stem ([3, 4, 9] R50 at
            stride 16, [3, 4, 6, 3] R50 and [2, 2, 2, 2] R26 at stride 32, [] the stem alone at stride 4); None
            embeds pixel patches, as the plain ViT. Default: None.
        patch_remainder (str, optional): Image sides that are not a multiple of the patch: `pad` zero-pads them
            bottom/right (official, timm, MMSeg 1.x); `drop` drops the pixels past the last whole patch (MMSeg
            v0.13/v0.14's ViT, whose patch conv has no padding). Default: pad.
        pretrained (str, optional): Weights for this backbone: a file of any family tools/convert.py reads, or an
            http(s) URL of one (a PaddleSeg .tar.gz archive too, downloaded once); None trains from scratch.
            Default: None.
    """

    def __init__(
        self,
        img_size: Union[int, List[int]] = 512,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        distilled: bool = False,
        norm_eps: float = 1e-5,
        pos_embed_interp: str = "bilinear",
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        patch_bias: bool = True,
        final_norm: bool = True,
        layer_scale_init: Optional[float] = None,
        out_indices: Optional[List[int]] = None,
        with_cls_token: bool = True,
        output_cls_token: bool = False,
        stem_layers: Optional[List[int]] = None,
        patch_remainder: str = "pad",
        drop_path_mode: str = "stochastic_depth",
        pretrained: Optional[str] = None,
    ):
        super().__init__()
        img_size = [img_size, img_size] if isinstance(img_size, int) else list(img_size)
        sizes = PATCH_SIZES if stem_layers is None else HYBRID_PATCH_SIZES
        if patch_size not in sizes:
            raise ValueError(
                f"SegmenterViT: patch_size={patch_size} is not supported"
                f"{'' if stem_layers is None else ' on a hybrid stem'}; use one of {sizes}."
            )
        stem_stride = 1 if stem_layers is None else stem_geometry(stem_layers)[0]
        stride = stem_stride * patch_size
        if img_size[0] % stride or img_size[1] % stride:
            on_stem = "" if stem_layers is None else f" on a stride-{stem_stride} stem"
            raise ValueError(
                f"SegmenterViT: img_size={img_size} must be a multiple of the token stride {stride} "
                f"(patch_size={patch_size}{on_stem})."
            )
        if pos_embed_interp not in POS_EMBED_INTERPOLATIONS:
            raise ValueError(
                f"SegmenterViT: pos_embed_interp='{pos_embed_interp}' is not one of {POS_EMBED_INTERPOLATIONS}."
            )
        if drop_path_mode not in DROP_PATH_MODES:
            raise ValueError(f"SegmenterViT: drop_path_mode='{drop_path_mode}' is not one of {DROP_PATH_MODES}.")
        if patch_remainder not in PATCH_REMAINDERS:
            raise ValueError(f"SegmenterViT: patch_remainder='{patch_remainder}' is not one of {PATCH_REMAINDERS}.")
        if output_cls_token and not with_cls_token:
            raise ValueError("SegmenterViT: output_cls_token=True needs with_cls_token=True.")
        if out_indices is not None and any(not -depth <= i < depth for i in out_indices):
            raise ValueError(f"SegmenterViT: out_indices={list(out_indices)} must lie in [-{depth}, {depth - 1}].")
        self.img_size = img_size
        self.patch_size = patch_size
        self.stem_layers = None if stem_layers is None else list(stem_layers)
        self.stride = stride  # pixels per token side
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.depth = depth
        self.distilled = distilled
        self.num_prefix_tokens = 2 if distilled else 1
        self.pos_embed_interp = pos_embed_interp
        self.final_norm = final_norm
        self.layer_scale_init = layer_scale_init
        self.out_indices = None if out_indices is None else [i % depth for i in out_indices]
        self.with_cls_token = with_cls_token
        self.output_cls_token = output_cls_token
        self.patch_remainder = patch_remainder
        self.grid_size = (img_size[0] // stride, img_size[1] // stride)
        num_patches = self.grid_size[0] * self.grid_size[1]

        if stem_layers is None:
            self.patch_embed = PatchEmbed(patch_size, in_channels, embed_dim, patch_bias)
        else:
            self.patch_embed = HybridEmbed(self.stem_layers, patch_size, in_channels, embed_dim, patch_bias)
        self.cls_token = self.create_parameter([1, 1, embed_dim], default_initializer=_zeros)
        self.dist_token = self.create_parameter([1, 1, embed_dim], default_initializer=_zeros) if distilled else None
        self.pos_embed = self.create_parameter(
            [1, self.num_prefix_tokens + num_patches, embed_dim], default_initializer=_zeros
        )
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = np.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth grows with depth
        depth_drop = drop_path_mode == "stochastic_depth"
        self.blocks = nn.LayerList(
            [
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio,
                    qkv_bias,
                    drop_rate,
                    attn_drop_rate,
                    dpr[i] if depth_drop else 0.0,
                    norm_eps,
                    layer_scale_init,
                    mlp_drop=None if depth_drop else dpr[i],
                )
                for i in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(embed_dim, epsilon=norm_eps) if final_norm else nn.Identity()

        self.apply(init_weights)
        _trunc_normal(self.pos_embed)
        _trunc_normal(self.cls_token)
        if distilled:
            _trunc_normal(self.dist_token)
        self.pretrained = pretrained
        if pretrained is not None:
            from segmenter.models.weights import load_pretrained

            load_pretrained(self, pretrained)

    def forward(
        self, x: paddle.Tensor, return_attn: bool = False
    ) -> Union[paddle.Tensor, Tuple[paddle.Tensor, List[paddle.Tensor]]]:
        """[B, C, H, W] -> [B, prefix + N, D]; with `return_attn` also each block's attention [B, heads, T, T].

        With `out_indices`, a tuple of maps [B, D, H/p, W/p] instead (each [map, cls [B, D]] with output_cls_token),
        and with `return_attn` (maps, attentions): UPerNet's attention comes from the same flag.
        """
        check_image_batch(x, self.in_channels, type(self).__name__)
        x = pad_to_patch(x, self.stride) if self.patch_remainder == "pad" else crop_to_patch(x, self.stride)
        B, _, H, W = x.shape
        x = self.patch_embed(x)  # [B, N, D]
        prefix = [self.cls_token.expand([B, -1, -1])]
        if self.distilled:
            prefix.append(self.dist_token.expand([B, -1, -1]))
        x = paddle.concat(prefix + [x], axis=1)  # [B, prefix + N, D]
        pos_embed = resample_pos_embed(
            self.pos_embed,
            self.grid_size,
            (H // self.stride, W // self.stride),
            self.num_prefix_tokens,
            self.pos_embed_interp,
        )
        x = self.pos_drop(x + pos_embed)
        if not self.with_cls_token:
            x = x[:, self.num_prefix_tokens :]  # [B, N, D]: as MMSeg, the positions were added first
        grid = (H // self.stride, W // self.stride)
        outs = []
        attns = [] if return_attn else None
        for i, blk in enumerate(self.blocks):
            x = run_block(blk, x, attns)
            if i == self.depth - 1:
                x = self.norm(x)
            if self.out_indices is not None and i in self.out_indices:
                outs.append(self.to_map(x, grid))
        if self.out_indices is not None:
            return (tuple(outs), attns) if return_attn else tuple(outs)
        return (x, attns) if return_attn else x

    def to_map(self, x: paddle.Tensor, grid: Tuple[int, int]) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        """Tokens [B, T, D] -> patch map [B, D, gh, gw] (plus the class token [B, D] with output_cls_token)."""
        gh, gw = grid
        patches = x[:, self.num_prefix_tokens :] if self.with_cls_token else x  # [B, N, D]
        B = patches.shape[0]
        out = patches.reshape([B, gh, gw, -1]).transpose([0, 3, 1, 2])  # [B, N, D] -> [B, gh, gw, D] -> [B, D, gh, gw]
        return [out, x[:, 0]] if self.output_cls_token else out

"""The Segmenter model: pad -> ViT encoder -> drop prefix tokens -> decoder -> upsample -> crop (PyTorch)."""

import inspect
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from segmenter.pytorch.linear_head import DecoderLinear
from segmenter.pytorch.mask_transformer import MaskTransformer
from segmenter.pytorch.vit import SegmenterViT, check_image_batch, pad_to_patch
from segmenter.resample import bilinear_weights

DECODERS = {"linear": DecoderLinear, "mask_transformer": MaskTransformer}
LOGITS_RESIZES = ("crop", "stretch")
# Coarse grids up to this side are upsampled by the separable product; larger ones by the kernel, where the
# product's 2 * (h + w) multiply-adds per output pixel would exceed the kernel's 4 several times over.
MAX_PRODUCT_GRID = 128


def upsample_bilinear(x: torch.Tensor, size: List[int]) -> torch.Tensor:
    """F.interpolate(x, size, mode="bilinear", align_corners=False), as two small matmuls on a coarse grid.

    Mirrors the Paddle twin, where the kernel is slow; here the product is as fast forward (59 vs 55 ms) and
    faster forward+backward (0.24 vs 0.42 s) for 2x150 logits from 32x32 to 512x512 (docs/benchmarks/history.md).
    It costs 2 * (h + w) multiply-adds per output pixel instead of 4, so grids above MAX_PRODUCT_GRID take the
    kernel.
    """
    h, w = x.shape[2], x.shape[3]
    if max(h, w) > MAX_PRODUCT_GRID:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    a_h = torch.from_numpy(bilinear_weights(h, size[0])).to(x.device, x.dtype)  # [H, h]
    a_w = torch.from_numpy(bilinear_weights(w, size[1])).to(x.device, x.dtype)  # [W, w]
    return separable_product(x, a_h, a_w)


def separable_product(x: torch.Tensor, a_h: torch.Tensor, a_w: torch.Tensor) -> torch.Tensor:
    """a_h @ x @ a_w^T on each map of x [B, C, h, w]: [B, C, H, W] for a_h [H, h], a_w [W, w].

    Mirrors the Paddle twin, whose folded batch and broadcast 1-pixel side are written around paddle's oneDNN
    matmul; here they are bitwise the plain product at the same speed.
    """
    C, h, w = x.shape[1:]
    x = x.reshape(-1, h, w)  # [B, C, h, w] -> [B * C, h, w]
    x = a_h * x if h == 1 else torch.matmul(a_h, x)  # [B * C, H, w]
    x = x.reshape(-1, C, a_h.shape[0], w)  # [B * C, H, w] -> [B, C, H, w]
    return x * a_w.t() if w == 1 else torch.matmul(x, a_w.t())  # [B, C, H, W]


def upsample_bilinear_nhwc(x: torch.Tensor, size: List[int]) -> torch.Tensor:
    """upsample_bilinear on channels-last maps: x [B, h, w, C] -> [B, H, W, C], the same products taken over W first
    (one small product per row) and then over H (one [H, h] x [h, W * C] product per image).

    Mirrors the Paddle twin, whose training forward hands the loss a view of channels-last logits (paddle's CPU
    cross entropy reads them 3.8x faster than the strided view of NCHW ones).
    """
    B, h, w, C = x.shape
    if max(h, w) > MAX_PRODUCT_GRID:
        return F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    a_h = torch.from_numpy(bilinear_weights(h, size[0])).to(x.device, x.dtype)  # [H, h]
    a_w = torch.from_numpy(bilinear_weights(w, size[1])).to(x.device, x.dtype)  # [W, w]
    x = torch.matmul(a_w, x.reshape(-1, w, C))  # [B * h, w, C] -> [B * h, W, C]
    x = torch.matmul(a_h, x.reshape(-1, h, size[1] * C))  # [B, h, W * C] -> [B, H, W * C]
    return x.reshape(-1, size[0], size[1], C)  # [B, H, W, C]


def build_decoder(cfg: Dict[str, Any], num_classes: int, d_encoder: int, who: str = "Segmenter") -> nn.Module:
    """Build a decoder from its config dict `{name: linear|mask_transformer, <its arguments>}`."""
    cfg = dict(cfg or {})
    name = cfg.pop("name", None)
    if name not in DECODERS:
        raise ValueError(f"{who}.decoder.name is {name!r}; set it to one of {sorted(DECODERS)}.")
    cls = DECODERS[name]
    allowed = [p for p in inspect.signature(cls).parameters if p not in ("num_classes", "d_encoder")]
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise TypeError(f"{who}.decoder ({name}) got unknown key(s) {unknown}; its keys are {allowed}.")
    return cls(num_classes=num_classes, d_encoder=d_encoder, **cfg)


class Segmenter(nn.Module):
    """
    Segmenter (Strudel et al., "Segmenter: Transformer for Semantic Segmentation", ICCV 2021).

    The input is zero-padded to a multiple of the patch, encoded by the ViT, the class/distillation tokens
    are dropped, the decoder predicts per-patch scores, which are bilinearly upsampled to the padded size and
    cropped back to the input size. Returns `[logits]`, logits [B, num_classes, H, W], as PaddleSeg expects.

    Args:
        num_classes (int): Number of classes.
        backbone (SegmenterViT): The encoder.
        decoder (dict): `name: linear` or `name: mask_transformer` plus that decoder's arguments
            (see DecoderLinear and MaskTransformer).
        logits_resize (str, optional): `crop` (official): upsample the logits to the padded size, then crop the
            padding off; `stretch` (MMSeg): resize the padded grid's logits straight to the input size. Default: crop.
        pretrained (str, optional): Path or http(s) URL of weights for the whole model, loaded strictly.
            Default: None.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: SegmenterViT,
        decoder: Dict[str, Any],
        logits_resize: str = "crop",
        pretrained: Optional[str] = None,
    ):
        super().__init__()
        if not isinstance(backbone, SegmenterViT):
            raise TypeError(
                f"Segmenter.backbone must be a SegmenterViT (type: SegmenterViT in the YAML); "
                f"got {type(backbone).__name__}."
            )
        if logits_resize not in LOGITS_RESIZES:
            raise ValueError(f"Segmenter.logits_resize is {logits_resize!r}; set it to one of {LOGITS_RESIZES}.")
        self.num_classes = num_classes
        self.logits_resize = logits_resize
        self.backbone = backbone
        self.patch_size = backbone.stride  # pixels per token side (a hybrid stem strides more than its patch)
        self.decoder_cfg = dict(decoder)
        self.decoder = build_decoder(decoder, num_classes, backbone.embed_dim)
        self.pretrained = pretrained
        if pretrained is not None:
            from segmenter.pytorch.weights import load_pretrained

            load_pretrained(self, pretrained)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        check_image_batch(x, self.backbone.in_channels, type(self).__name__)
        H, W = x.shape[2], x.shape[3]
        x = pad_to_patch(x, self.patch_size)
        Hp, Wp = x.shape[2], x.shape[3]
        tokens = self.backbone(x)  # [B, prefix + N, D]
        tokens = tokens[:, self.backbone.num_prefix_tokens :]  # [B, N, D]
        masks = self.decoder(tokens, (Hp // self.patch_size, Wp // self.patch_size))  # [B, n_cls, gh, gw]
        size = [H, W] if self.logits_resize == "stretch" else [Hp, Wp]
        if self.training:  # channels-last logits for the loss (upsample_bilinear_nhwc)
            masks = upsample_bilinear_nhwc(masks.permute(0, 2, 3, 1), size).permute(0, 3, 1, 2)  # views
        else:
            masks = upsample_bilinear(masks, size)
        return [masks[:, :, :H, :W]]  # (stretch: already H x W)

"""The Segmenter model: pad -> ViT encoder -> drop prefix tokens -> decoder -> upsample -> crop (Paddle)."""

import inspect
from typing import Any, Dict, List, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from segmenter.models.linear_head import DecoderLinear
from segmenter.models.mask_transformer import MaskTransformer
from segmenter.models.vit import SegmenterViT, check_image_batch, pad_to_patch
from segmenter.resample import bilinear_weights

DECODERS = {"linear": DecoderLinear, "mask_transformer": MaskTransformer}
LOGITS_RESIZES = ("crop", "stretch")
# Coarse grids up to this side are upsampled by the separable product; larger ones by the kernel, where the
# product's 2 * (h + w) multiply-adds per output pixel would exceed the kernel's 4 several times over.
MAX_PRODUCT_GRID = 128


def upsample_bilinear(x: paddle.Tensor, size: List[int]) -> paddle.Tensor:
    """F.interpolate(x, size, mode="bilinear", align_corners=False), as two small matmuls on a coarse grid.

    Paddle 3.3's CPU bilinear kernel took 155 ms forward and ~1.2 s forward+backward to take 2x150 logits
    from 32x32 to 512x512; the separable product takes 28 ms and 0.17 s (docs/benchmarks/history.md). It costs
    2 * (h + w) multiply-adds per output pixel instead of 4, so grids above MAX_PRODUCT_GRID take the kernel.
    """
    h, w = x.shape[2], x.shape[3]
    if max(h, w) > MAX_PRODUCT_GRID:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    a_h = paddle.to_tensor(bilinear_weights(h, size[0]), dtype=x.dtype)  # [H, h]
    a_w = paddle.to_tensor(bilinear_weights(w, size[1]), dtype=x.dtype)  # [W, w]
    return separable_product(x, a_h, a_w)


def separable_product(x: paddle.Tensor, a_h: paddle.Tensor, a_w: paddle.Tensor) -> paddle.Tensor:
    """a_h @ x @ a_w^T on each map of x [B, C, h, w]: [B, C, H, W] for a_h [H, h], a_w [W, w].

    Written around two faults of paddle 3.3.1's oneDNN matmul (the compiled path; `tools/benchmark.py onednn_repro`
    shows both), each form bitwise the plain product at the same dygraph speed: the maps are folded into one batch
    axis (a view) for the first product, since oneDNN's matmul reads a 4-D input that a conv left in oneDNN's
    blocked layout as plain NCHW (UPerNetViT's logits were off by ~8) and reshape hands it over in plain layout;
    a side of 1 pixel (the pyramid pooling's 1x1 map) is a broadcast product, since oneDNN's matmul over an inner
    dimension of 1 with transpose_y returns wrong values.
    """
    C, h, w = x.shape[1:]  # the batch may be unknown (-1) in an export
    x = x.reshape([-1, h, w])  # [B, C, h, w] -> [B * C, h, w]
    x = a_h * x if h == 1 else paddle.matmul(a_h, x)  # [B * C, H, w]
    # unfolded before the larger product: oneDNN's reshape copies, and [B, C, H, W] is the largest tensor here
    x = x.reshape([-1, C, a_h.shape[0], w])  # [B * C, H, w] -> [B, C, H, w]
    return x * a_w.T if w == 1 else paddle.matmul(x, a_w, transpose_y=True)  # [B, C, H, W]


def upsample_bilinear_nhwc(x: paddle.Tensor, size: List[int]) -> paddle.Tensor:
    """upsample_bilinear on channels-last maps: x [B, h, w, C] -> [B, H, W, C], the same products taken over W first
    (one small product per row) and then over H (one [H, h] x [h, W * C] product per image).

    Segmenter's training forward upsamples the decoder's masks this way and hands the loss a [B, C, H, W] view of
    the result: the cross entropy reads the class axis last, and paddle 3.3's CPU cross entropy on the strided view
    of NCHW logits took 3.8x the CPU time of the contiguous channels-last ones (with the upsampling, forward +
    backward, 2x150x512x512, one thread: 1.62 s against 0.43 s; docs/benchmarks.md).
    """
    B, h, w, C = x.shape
    if max(h, w) > MAX_PRODUCT_GRID:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, data_format="NHWC")
    a_h = paddle.to_tensor(bilinear_weights(h, size[0]), dtype=x.dtype)  # [H, h]
    a_w = paddle.to_tensor(bilinear_weights(w, size[1]), dtype=x.dtype)  # [W, w]
    x = paddle.matmul(a_w, x.reshape([-1, w, C]))  # [B * h, w, C] -> [B * h, W, C]
    x = paddle.matmul(a_h, x.reshape([-1, h, size[1] * C]))  # [B, h, W * C] -> [B, H, W * C]
    return x.reshape([-1, size[0], size[1], C])  # [B, H, W, C]


def build_decoder(cfg: Dict[str, Any], num_classes: int, d_encoder: int, who: str = "Segmenter") -> nn.Layer:
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


@manager.MODELS.add_component
class Segmenter(nn.Layer):
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
            from segmenter.models.weights import load_pretrained

            load_pretrained(self, pretrained)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        check_image_batch(x, self.backbone.in_channels, type(self).__name__)
        H, W = x.shape[2], x.shape[3]
        x = pad_to_patch(x, self.patch_size)
        Hp, Wp = x.shape[2], x.shape[3]
        tokens = self.backbone(x)  # [B, prefix + N, D]
        tokens = tokens[:, self.backbone.num_prefix_tokens :]  # [B, N, D]
        masks = self.decoder(tokens, (Hp // self.patch_size, Wp // self.patch_size))  # [B, n_cls, gh, gw]
        size = [H, W] if self.logits_resize == "stretch" else [Hp, Wp]
        if self.training and paddle.in_dynamic_mode():  # channels-last logits for the loss (upsample_bilinear_nhwc)
            masks = upsample_bilinear_nhwc(masks.transpose([0, 2, 3, 1]), size).transpose([0, 3, 1, 2])  # views
        else:
            masks = upsample_bilinear(masks, size)
        return [masks[:, :, :H, :W]]  # (stretch: already H x W)

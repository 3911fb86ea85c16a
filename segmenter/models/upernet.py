"""UPerNet on a ViT (MMSeg's `configs/vit/`): ViT maps -> optional MultiLevelNeck -> UPerHead (+ FCN aux) (Paddle)."""

from typing import Any, Dict, List, Optional

import paddle
import paddle.nn as nn
from paddleseg.cvlibs import manager

from segmenter.models.heads.fcn import FCNHead
from segmenter.models.heads.uper import UPerHead
from segmenter.models.necks.multi_level import MultiLevelNeck
from segmenter.models.segmenter import upsample_bilinear
from segmenter.models.vit import SegmenterViT, check_image_batch


def build_part(cls: type, cfg: Optional[Dict[str, Any]], where: str, **given: Any) -> Optional[nn.Layer]:
    """`cls(**given, **cfg)`, refusing keys `cls` does not take with one line that lists the ones it does."""
    if cfg is None:
        return None
    import inspect

    allowed = [p for p in inspect.signature(cls).parameters if p not in given]
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise TypeError(f"UPerNetViT.{where} got unknown key(s) {unknown}; its keys are {allowed}.")
    return cls(**given, **cfg)


@manager.MODELS.add_component
class UPerNetViT(nn.Layer):
    """
    UPerNet with a ViT encoder, as MMSeg's `EncoderDecoder` runs its ViT/DeiT rows: the ViT returns the maps of
    `backbone.out_indices`, an optional MultiLevelNeck rescales them into a pyramid, UPerHead predicts at the
    finest level and the logits are resized bilinearly straight to the input size (MMSeg does not crop the
    patch padding back: it stretches). In training an FCN auxiliary head on one map adds a second output.

    Args:
        num_classes (int): Number of classes.
        backbone (SegmenterViT): The encoder; its `out_indices` choose the maps (e.g. [2, 5, 8, 11]).
        decode_head (dict): UPerHead arguments: channels, pool_scales, dropout.
        neck (dict, optional): MultiLevelNeck arguments (scales); null feeds the ViT maps directly. Default: None.
        auxiliary_head (dict, optional): FCNHead arguments (in_index, channels, num_convs, dropout); used in
            training only. Default: None.
        pretrained (str, optional): Path or http(s) URL of weights for the whole model, loaded strictly.
            Default: None.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: SegmenterViT,
        decode_head: Dict[str, Any],
        neck: Optional[Dict[str, Any]] = None,
        auxiliary_head: Optional[Dict[str, Any]] = None,
        pretrained: Optional[str] = None,
    ):
        super().__init__()
        if not isinstance(backbone, SegmenterViT) or not backbone.out_indices:
            raise TypeError("UPerNetViT.backbone must be a SegmenterViT with out_indices (e.g. [2, 5, 8, 11]).")
        self.num_classes = num_classes
        self.backbone = backbone
        widths = [backbone.embed_dim] * len(backbone.out_indices)
        self.neck = build_part(MultiLevelNeck, neck, "neck", in_channels=widths, out_channels=backbone.embed_dim)
        if self.neck is not None:
            widths = [backbone.embed_dim] * len(self.neck.scales)
        self.decode_head = build_part(UPerHead, decode_head, "decode_head", num_classes=num_classes, in_channels=widths)
        self.auxiliary_head = build_part(
            FCNHead, auxiliary_head, "auxiliary_head", num_classes=num_classes, in_channels=backbone.embed_dim
        )
        self.pretrained = pretrained
        if pretrained is not None:
            from segmenter.models.weights import load_pretrained

            load_pretrained(self, pretrained)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        """[B, C, H, W] -> [logits [B, num_classes, H, W]] (+ auxiliary logits in training)."""
        check_image_batch(x, self.backbone.in_channels, type(self).__name__)
        size = [x.shape[2], x.shape[3]]
        feats = self.backbone(x)  # maps [B, D, ceil(H/p), ceil(W/p)]
        if self.neck is not None:
            feats = self.neck(feats)
        out = [upsample_bilinear(self.decode_head(feats), size)]
        if self.training and self.auxiliary_head is not None:
            out.append(upsample_bilinear(self.auxiliary_head(feats[self.auxiliary_head.in_index]), size))
        return out

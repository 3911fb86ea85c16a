"""Build MMSegmentation's and mmpretrain's own models in tests (random weights, saved as those projects save).

mmcv-lite lacks the compiled `mmcv.ops`; `mmseg.models` only imports names from it (point_sample, focal-loss
kernels) that none of the models built here calls, so a stand-in module that raises when called is enough.
"""

import contextlib
import sys
import types
from typing import Any, Dict, Iterator, List, Optional

import torch

D, HEADS, CLASSES = 128, 2, 150  # D // 64 heads (what the converter assumes); ADE20K's 150 classes


def _stand_in_mmcv_ops() -> None:
    if "mmcv.ops" in sys.modules:
        return

    def missing(*args, **kwargs):
        raise NotImplementedError("mmcv.ops is not built in this environment (mmcv-lite)")

    def getattr_(name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return missing

    ops = types.ModuleType("mmcv.ops")
    ops.__getattr__ = getattr_
    sys.modules["mmcv.ops"] = ops


def mmseg_registry():
    _stand_in_mmcv_ops()
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    return MODELS


# torch.nn.init's in-place initialisers, which the modules' constructors (reset_parameters) call
_INITIALISERS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
)


@contextlib.contextmanager
def no_init() -> Iterator[None]:
    """Modules built inside keep the uninitialised memory torch.empty gave their parameters: for a model whose every
    weight is set right after (`randomize`, or a strict load), which is all the init would have been for. At full
    width the init was the costliest part of building (ViT-B UPerNet, 142 M parameters: ~6 s in MMSeg, ~8 s in
    the twin on a loaded 2-core machine)."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS}
    try:
        for name in _INITIALISERS:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every weight random (Linear / conv at std 1/sqrt(fan-in), so activations stay of order 1 through the
    heads), norms' scales away from 1 and BatchNorm statistics away from 0/1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif t.ndim == 1 and name.endswith("weight"):  # LayerNorm / BatchNorm scales
                t.copy_(1.0 + 0.2 * torch.randn(t.shape, generator=g))
            elif t.ndim >= 2 and "pos_embed" not in name and "cls_" not in name:  # Linear, conv: unit gain
                t.copy_(torch.randn(t.shape, generator=g) / (t[0].numel() ** 0.5))
            else:  # biases, tokens, position embeddings
                t.copy_(0.1 * torch.randn(t.shape, generator=g))


def _vit(depth: int, final_norm: bool, out_indices: Any = -1) -> Dict[str, Any]:
    return dict(
        type="VisionTransformer",
        img_size=(32, 32),
        patch_size=16,
        in_channels=3,
        embed_dims=D,
        num_layers=depth,
        num_heads=HEADS,
        mlp_ratio=4,
        out_indices=out_indices,
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        with_cls_token=True,
        final_norm=final_norm,
        norm_cfg=dict(type="LN", eps=1e-6),
        act_cfg=dict(type="GELU"),
        interpolate_mode="bicubic",
    )


def segmenter_cfg(head: str) -> Dict[str, Any]:
    """MMSeg's Segmenter rows (configs/segmenter/), at depth 2: `mask` or `fcn` (the linear decoder)."""
    if head == "mask":
        decode = dict(
            type="SegmenterMaskTransformerHead",
            in_channels=D,
            channels=D,
            num_classes=CLASSES,
            num_layers=2,
            num_heads=HEADS,
            embed_dims=D,
            dropout_ratio=0.0,
        )
    else:
        decode = dict(
            type="FCNHead",
            in_channels=D,
            channels=D,
            num_convs=0,
            dropout_ratio=0.0,
            concat_input=False,
            num_classes=CLASSES,
        )
    decode["loss_decode"] = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
    return dict(type="EncoderDecoder", backbone=_vit(2, True), decode_head=decode, test_cfg=dict(mode="whole"))


def upernet_cfg(mln: bool, final_norm: bool, aux: bool = True) -> Dict[str, Any]:
    """MMSeg's ViT/DeiT UPerNet rows (configs/vit/, `_base_/models/upernet_vit-b16_ln_mln.py`) at depth 4."""
    bn = dict(type="BN", requires_grad=True)  # SyncBN in the configs: the same at inference
    cfg = dict(
        type="EncoderDecoder",
        backbone=_vit(4, final_norm, out_indices=(0, 1, 2, 3)),
        neck=dict(type="MultiLevelNeck", in_channels=[D] * 4, out_channels=D, scales=[4, 2, 1, 0.5]) if mln else None,
        decode_head=dict(
            type="UPerHead",
            in_channels=[D] * 4,
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6),
            channels=32,
            dropout_ratio=0.1,
            num_classes=CLASSES,
            norm_cfg=bn,
            align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        ),
        test_cfg=dict(mode="whole"),
    )
    if aux:
        cfg["auxiliary_head"] = dict(
            type="FCNHead",
            in_channels=D,
            in_index=3,
            channels=16,
            num_convs=1,
            concat_input=False,
            dropout_ratio=0.1,
            num_classes=CLASSES,
            norm_cfg=bn,
            align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),
        )
    return cfg


def upernet_v0_cfg(
    depth: int = 4, width: int = D, heads: int = HEADS, channels: int = 32, aux_channels: int = 16, img: int = 32
) -> Dict[str, Any]:
    """MMSeg v0.13/v0.14's UPerNet ViT rows (PR #520 before its merge, `_base_/models/upernet_vit-b16.py` at commit
    4d77761) built from MMSeg 1.2.2's own modules: the ViT returns only its last block (out_indices=11 there), with
    a bias on the patch conv and no final norm; MultiLevelNeck(in_channels=[D], scales=[0.5, 1, 2, 4]) repeats its
    one input to the four scales, coarsest first; UPerHead on the four maps; FCNHead on map 0."""
    bn = dict(type="BN", requires_grad=True)  # SyncBN in the configs: the same at inference
    vit = dict(
        _vit(depth, False, out_indices=depth - 1),
        img_size=(img, img),
        embed_dims=width,
        num_heads=heads,
        patch_bias=True,
    )
    return dict(
        type="EncoderDecoder",
        backbone=vit,
        neck=dict(type="MultiLevelNeck", in_channels=[width], out_channels=width, scales=[0.5, 1, 2, 4]),
        decode_head=dict(
            type="UPerHead",
            in_channels=[width] * 4,
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6),
            channels=channels,
            dropout_ratio=0.1,
            num_classes=CLASSES,
            norm_cfg=bn,
            align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        ),
        auxiliary_head=dict(
            type="FCNHead",
            in_channels=width,
            in_index=0,
            channels=aux_channels,
            num_convs=1,
            concat_input=False,
            dropout_ratio=0.1,
            num_classes=CLASSES,
            norm_cfg=bn,
            align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),
        ),
        test_cfg=dict(mode="whole"),
    )


def build_mmseg(cfg: Dict[str, Any], seed: int) -> torch.nn.Module:
    from mmengine.config import ConfigDict

    with no_init():  # every weight is randomized next
        model = mmseg_registry().build(ConfigDict(cfg))
    randomize(model, seed)
    model.eval()  # (mmpretrain's train() override returns None, so eval() does too)
    return model


def mmseg_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MMSeg's whole-image inference: logits resized to the input size, [B, K, H, W]."""
    metas: List[Dict[str, Any]] = [dict(img_shape=tuple(x.shape[2:]), ori_shape=tuple(x.shape[2:]))] * x.shape[0]
    with torch.no_grad():
        return model.inference(x, metas)


def build_mmpretrain_vit(
    depth: int, seed: int, out_type: str = "raw", layer_scale_init_value: float = 0.0, deit3: bool = False
) -> torch.nn.Module:
    """mmpretrain's VisionTransformer (classification backbone), ViT-B16-like at `depth` and width D; with
    `layer_scale_init_value` > 0 its blocks carry LayerScale (randomised like every other 1-D weight). `deit3`:
    its DeiT3 backbone instead (layer scale, and no position row for the class token)."""
    _stand_in_mmcv_ops()
    from mmpretrain.models.backbones import DeiT3, VisionTransformer

    arch = dict(embed_dims=D, num_layers=depth, num_heads=HEADS, feedforward_channels=4 * D)
    common = dict(arch=arch, img_size=32, patch_size=16, out_type=out_type, final_norm=True, interpolate_mode="bicubic")
    with no_init():  # every weight is randomized next
        model = (
            DeiT3(use_layer_scale=True, **common)
            if deit3
            else VisionTransformer(layer_scale_init_value=layer_scale_init_value, **common)
        )
    randomize(model, seed)
    model.eval()  # (mmpretrain's train() override returns None, so eval() does too)
    return model


def save_as_mm(model: torch.nn.Module, path: str, prefix: str = "", meta: Optional[dict] = None) -> None:
    """As MMEngine's CheckpointHook writes: {"meta": ..., "state_dict": ...}."""
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({"meta": meta or {"mmseg_version": "1.2.2"}, "state_dict": state}, path)

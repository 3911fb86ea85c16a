"""The architecture a canonical state dict encodes, the shapes it implies, and its YAML model section."""

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np


@dataclass
class Arch:
    """Everything needed to build the model a set of weights belongs to (names as in the YAML)."""

    img_size: List[int]
    patch_size: int
    in_channels: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    qkv_bias: bool
    distilled: bool
    norm_eps: float
    pos_embed_interp: str
    num_classes: Optional[int] = None  # None for backbone-only weights
    decoder: Optional[Dict[str, Any]] = None  # {name: linear} or {name: mask_transformer, ...}
    patch_bias: bool = True
    final_norm: bool = True
    layer_scale_init: Optional[float] = None  # LayerScale in every block (ls1/ls2.gamma), or None
    out_indices: Optional[List[int]] = None  # UPerNetViT: the blocks whose maps feed the neck / head
    logits_resize: str = "crop"  # Segmenter: crop (official) or stretch (MMSeg)
    neck: Optional[Dict[str, Any]] = None  # UPerNetViT: MultiLevelNeck arguments, or None
    decode_head: Optional[Dict[str, Any]] = None  # UPerNetViT: UPerHead arguments
    auxiliary_head: Optional[Dict[str, Any]] = None  # UPerNetViT: FCNHead arguments, or None
    stem_layers: Optional[List[int]] = None  # hybrid: bottlenecks per ResNetV2 stage ([] the stem alone), or None
    patch_remainder: str = "pad"  # pad (official, timm, MMSeg 1.x) or drop (MMSeg v0.13's ViT)

    def backbone_config(self) -> Dict[str, Any]:
        """The `model.backbone` section of a config (without dropout and pretrained)."""
        d = asdict(self)
        for key in NOT_BACKBONE:
            d.pop(key)
        for key in ("layer_scale_init", "stem_layers"):  # the configs of plain ViT weights stay as they were
            if d[key] is None:
                d.pop(key)
        if d["patch_remainder"] == "pad":  # likewise the default
            d.pop("patch_remainder")
        return {"type": "SegmenterViT", **d}

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    @property
    def stride(self) -> int:
        """Pixels per token side: the patch, times the hybrid stem's stride."""
        return self.patch_size * (1 if self.stem_layers is None else stem_stride(self.stem_layers))

    def describe(self) -> str:
        """One line: the ViT and what sits on it (tools/convert.py prints it)."""
        if self.decode_head:
            neck = f" + MultiLevelNeck (scales {self.neck['scales']})" if self.neck else ""
            aux = f" + FCN aux (map {self.auxiliary_head['in_index']})" if self.auxiliary_head else ""
            head = f"UPerHead{neck}{aux}, {self.num_classes} classes, maps of blocks {self.out_indices}"
        else:
            head = f"{self.decoder['name']} decoder, {self.num_classes} classes" if self.decoder else "backbone only"
        return (
            f"ViT D={self.embed_dim} depth={self.depth} heads={self.num_heads} patch={self.patch_size} "
            f"img={self.img_size}"
            f"{'' if self.stem_layers is None else f', ResNetV2 stem {self.stem_layers} (stride {self.stride})'}"
            f"{', layer scale' if self.layer_scale_init is not None else ''}"
            f"{', patch remainder dropped' if self.patch_remainder == 'drop' else ''}, {head}"
        )


NOT_BACKBONE = ("num_classes", "decoder", "logits_resize", "neck", "decode_head", "auxiliary_head")
# What UPerNet weights cannot tell, as MMSeg's ViT configs set it (four levels).
UPERNET_POOL_SCALES = [1, 2, 3, 6]
MLN_SCALES = [4, 2, 1, 0.5]
# The init value of LayerScale weights that carry it, when nothing records it: weights hold the trained gammas,
# not where they started, and once loaded the value has no effect (timm's and mmpretrain's default 1e-5).
LAYER_SCALE_INIT = 1e-5
# The hybrid stem (models/resnetv2.py): a 7x7/2 conv + 3x3/2 pool of 64 channels, then stages of these widths, the
# first at stride 1 and each next one at stride 2. Stated here too so that converting imports no framework.
STEM_WIDTH, STEM_STRIDE, STAGE_WIDTHS = 64, 4, (256, 512, 1024, 2048)
HYBRID = "backbone.patch_embed.backbone."


def stem_stride(layers: List[int]) -> int:
    return STEM_STRIDE * 2 ** (len(layers) - 1) if layers else STEM_STRIDE


def stem_layers_of(state: Mapping[str, np.ndarray]) -> Optional[List[int]]:
    """Bottlenecks per stage of a hybrid stem in canonical weights ([] the stem alone), None for a plain ViT."""
    if HYBRID + "stem.conv.weight" in state:
        return [_count(state, f"{HYBRID}stages.{i}.blocks.") for i in range(_count(state, HYBRID + "stages."))]
    return [] if HYBRID + "conv.weight" in state else None


def token_stride(state: Mapping[str, np.ndarray]) -> Optional[int]:
    """Pixels per token side of canonical weights (None without a patch embedding)."""
    conv = state.get("backbone.patch_embed.proj.weight")
    if conv is None:
        return None
    layers = stem_layers_of(state)
    return int(conv.shape[-1]) * (1 if layers is None else stem_stride(layers))


def _count(state: Mapping[str, np.ndarray], prefix: str) -> int:
    idx = {int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    if idx and idx != set(range(len(idx))):
        raise ValueError(f"block indices under '{prefix}' are not 0..{len(idx) - 1}: {sorted(idx)}")
    return len(idx)


def _need(state: Mapping[str, np.ndarray], key: str, source: str) -> np.ndarray:
    if key not in state:
        raise ValueError(
            f"'{source}': converted weights lack '{key}', so the architecture cannot be read from "
            f"them; keys present: {sorted(state)[:12]}..."
        )
    return state[key]


def infer_arch(
    state: Mapping[str, np.ndarray],
    source: str,
    norm_eps: float,
    pos_embed_interp: str,
    overrides: Optional[Dict[str, Any]] = None,
) -> Arch:
    """Read the architecture from canonical weights; what weights cannot tell comes from `overrides`.

    Attention heads are not visible in weights: `num_heads` / `decoder_heads` default to width // 64, which
    holds for ViT Ti/S/B/L and for every released Segmenter decoder.
    """
    o = dict(overrides or {})
    cls = _need(state, "backbone.cls_token", source)
    D = int(cls.shape[-1])
    conv = _need(state, "backbone.patch_embed.proj.weight", source)  # [D, C, p, p]
    patch, C = int(conv.shape[-1]), int(conv.shape[1])
    layers = stem_layers_of(state)
    if layers is not None:  # the patch embedding reads the stem's map: the image channels are the stem conv's
        C = int(state[HYBRID + ("stem.conv.weight" if layers else "conv.weight")].shape[1])
    stride = token_stride(state)
    distilled = "backbone.dist_token" in state
    n_grid = int(_need(state, "backbone.pos_embed", source).shape[1]) - (2 if distilled else 1)
    side = int(round(math.sqrt(n_grid)))
    if o.get("img_size") is not None:
        img = list(o["img_size"])
    elif side * side == n_grid:
        img = [side * stride, side * stride]
    else:
        raise ValueError(
            f"'{source}': pos_embed holds {n_grid} grid tokens, not a square grid; "
            f"pass the training size (--img-size W H, width then height)."
        )
    fc1 = _need(state, "backbone.blocks.0.mlp.fc1.weight", source)  # [D, hidden] (canonical = Paddle layout)
    arch = Arch(
        img_size=img,
        patch_size=patch,
        in_channels=C,
        embed_dim=D,
        depth=_count(state, "backbone.blocks."),
        num_heads=int(o.get("num_heads") or D // 64),
        mlp_ratio=float(fc1.shape[1]) / D,
        qkv_bias="backbone.blocks.0.attn.qkv.bias" in state,
        distilled=distilled,
        norm_eps=float(o.get("norm_eps") or norm_eps),
        pos_embed_interp=str(o.get("pos_embed_interp") or pos_embed_interp),
        patch_bias="backbone.patch_embed.proj.bias" in state,
        final_norm="backbone.norm.weight" in state,
        logits_resize=str(o.get("logits_resize") or "crop"),
        patch_remainder=str(o.get("patch_remainder") or "pad"),
        stem_layers=layers,
    )
    if "backbone.blocks.0.ls1.gamma" in state:
        arch.layer_scale_init = float(o.get("layer_scale_init") or LAYER_SCALE_INIT)
    if "decode_head.psp_modules.0.conv.weight" in state:
        return _upernet_arch(state, arch, source, o)
    if "decoder.head.weight" in state:
        arch.num_classes = int(state["decoder.head.weight"].shape[1])
        arch.decoder = {"name": "linear"}
    elif "decoder.cls_emb" in state:
        _, K, d = state["decoder.cls_emb"].shape
        dfc1 = _need(state, "decoder.blocks.0.mlp.fc1.weight", source)
        arch.num_classes = int(K)
        arch.decoder = {
            "name": "mask_transformer",
            "n_layers": _count(state, "decoder.blocks."),
            "d_model": int(d),
            "n_heads": int(o.get("decoder_heads") or d // 64),
            "mlp_ratio": float(dfc1.shape[1]) / d,
            "qkv_bias": "decoder.blocks.0.attn.qkv.bias" in state,
            "norm_eps": float(o.get("decoder_norm_eps") or o.get("norm_eps") or norm_eps),
        }
    return arch


def _upernet_arch(state: Mapping[str, np.ndarray], arch: Arch, source: str, o: Dict[str, Any]) -> Arch:
    """UPerNetViT: widths and counts from the weights; out_indices, scales and pool sizes as MMSeg's configs."""
    seg = _need(state, "decode_head.conv_seg.weight", source)  # [K, channels, 1, 1]
    levels = _count(state, "decode_head.lateral_convs.") + 1
    n_pool = _count(state, "decode_head.psp_modules.")
    pool_scales = o.get("pool_scales") or UPERNET_POOL_SCALES
    if len(pool_scales) != n_pool:
        raise ValueError(f"'{source}': the PPM has {n_pool} branches; pass their pool sizes (--pool-scales).")
    n_maps = levels
    if "neck.convs.0.conv.weight" in state:
        n_maps = _count(state, "neck.lateral_convs.")
        scales = o.get("neck_scales") or MLN_SCALES
        if len(scales) != levels:
            raise ValueError(f"'{source}': the neck has {levels} outputs; pass their scales (--neck-scales).")
        arch.neck = {"scales": list(scales)}
    # MMSeg's configs take evenly spaced blocks, ending with the last: (2, 5, 8, 11) of 12.
    arch.out_indices = list(o.get("out_indices") or [arch.depth * (i + 1) // n_maps - 1 for i in range(n_maps)])
    if len(arch.out_indices) != n_maps:
        raise ValueError(f"'{source}': the head reads {n_maps} maps but --out-indices gives {arch.out_indices}.")
    arch.num_classes = int(seg.shape[0])
    arch.decode_head = {"channels": int(seg.shape[1]), "pool_scales": list(pool_scales), "dropout": 0.1}
    if "auxiliary_head.conv_seg.weight" in state:
        aux = state["auxiliary_head.conv_seg.weight"]
        arch.auxiliary_head = {
            "in_index": int(o["aux_in_index"]) if o.get("aux_in_index") is not None else -1,
            "channels": int(aux.shape[1]),
            "num_convs": _count(state, "auxiliary_head.convs."),
            "dropout": 0.1,
        }
    return arch


def _conv_shapes(prefix: str, c_in: int, c_out: int, k: int, norm: bool = True) -> Dict[str, Tuple[int, ...]]:
    s = {f"{prefix}.conv.weight": (c_out, c_in, k, k)}
    if norm:
        s.update({f"{prefix}.bn.{n}": (c_out,) for n in ("weight", "bias", "_mean", "_variance")})
    else:
        s[f"{prefix}.conv.bias"] = (c_out,)
    return s


def _upernet_shapes(arch: Arch) -> Dict[str, Tuple[int, ...]]:
    D, K = arch.embed_dim, arch.num_classes
    widths = [D] * len(arch.out_indices)
    s: Dict[str, Tuple[int, ...]] = {}
    if arch.neck:
        for i, c in enumerate(widths):
            s.update(_conv_shapes(f"neck.lateral_convs.{i}", c, D, 1, norm=False))
        widths = [D] * len(arch.neck["scales"])
        for i in range(len(widths)):
            s.update(_conv_shapes(f"neck.convs.{i}", D, D, 3, norm=False))
    head = arch.decode_head
    ch, n_pool = head["channels"], len(head["pool_scales"])
    for i in range(n_pool):
        s.update(_conv_shapes(f"decode_head.psp_modules.{i}", widths[-1], ch, 1))
    s.update(_conv_shapes("decode_head.bottleneck", widths[-1] + n_pool * ch, ch, 3))
    for i, c in enumerate(widths[:-1]):
        s.update(_conv_shapes(f"decode_head.lateral_convs.{i}", c, ch, 1))
        s.update(_conv_shapes(f"decode_head.fpn_convs.{i}", ch, ch, 3))
    s.update(_conv_shapes("decode_head.fpn_bottleneck", len(widths) * ch, ch, 3))
    s.update({"decode_head.conv_seg.weight": (K, ch, 1, 1), "decode_head.conv_seg.bias": (K,)})
    aux = arch.auxiliary_head
    if aux:
        for i in range(aux["num_convs"]):
            s.update(_conv_shapes(f"auxiliary_head.convs.{i}", D if i == 0 else aux["channels"], aux["channels"], 3))
        c = aux["channels"] if aux["num_convs"] else D
        s.update({"auxiliary_head.conv_seg.weight": (K, c, 1, 1), "auxiliary_head.conv_seg.bias": (K,)})
    return s


def _block_shapes(
    prefix: str, D: int, hidden: int, qkv_bias: bool, layer_scale: bool = False
) -> Dict[str, Tuple[int, ...]]:
    s = {
        f"{prefix}.norm1.weight": (D,),
        f"{prefix}.norm1.bias": (D,),
        f"{prefix}.attn.qkv.weight": (D, 3 * D),
        f"{prefix}.attn.proj.weight": (D, D),
        f"{prefix}.attn.proj.bias": (D,),
        f"{prefix}.norm2.weight": (D,),
        f"{prefix}.norm2.bias": (D,),
        f"{prefix}.mlp.fc1.weight": (D, hidden),
        f"{prefix}.mlp.fc1.bias": (hidden,),
        f"{prefix}.mlp.fc2.weight": (hidden, D),
        f"{prefix}.mlp.fc2.bias": (D,),
    }
    if qkv_bias:
        s[f"{prefix}.attn.qkv.bias"] = (3 * D,)
    if layer_scale:
        s.update({f"{prefix}.ls1.gamma": (D,), f"{prefix}.ls2.gamma": (D,)})
    return s


def _norm_shapes(prefix: str, c: int) -> Dict[str, Tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _stem_shapes(layers: List[int], c_in: int) -> Dict[str, Tuple[int, ...]]:
    """The hybrid's ResNetV2 (timm's names under backbone.patch_embed.backbone; the stem alone when no stages)."""
    stem = HYBRID + ("stem." if layers else "")
    s = {stem + "conv.weight": (STEM_WIDTH, c_in, 7, 7), **_norm_shapes(stem + "norm", STEM_WIDTH)}
    c = STEM_WIDTH
    for i, depth in enumerate(layers):
        out = STAGE_WIDTHS[i]
        mid = out // 4
        for j in range(depth):
            b = f"{HYBRID}stages.{i}.blocks.{j}."
            if j == 0:
                s.update({b + "downsample.conv.weight": (out, c, 1, 1), **_norm_shapes(b + "downsample.norm", out)})
            s.update(
                {
                    b + "conv1.weight": (mid, c if j == 0 else out, 1, 1),
                    b + "conv2.weight": (mid, mid, 3, 3),
                    b + "conv3.weight": (out, mid, 1, 1),
                    **_norm_shapes(b + "norm1", mid),
                    **_norm_shapes(b + "norm2", mid),
                    **_norm_shapes(b + "norm3", out),
                }
            )
        c = out
    return s


def expected_shapes(arch: Arch) -> Dict[str, Tuple[int, ...]]:
    """Every canonical key the architecture has, with its shape in the canonical (Paddle) layout."""
    D, p = arch.embed_dim, arch.patch_size
    prefix = 2 if arch.distilled else 1
    n = (arch.img_size[0] // arch.stride) * (arch.img_size[1] // arch.stride)
    s: Dict[str, Tuple[int, ...]] = {
        "backbone.cls_token": (1, 1, D),
        "backbone.pos_embed": (1, prefix + n, D),
        "backbone.patch_embed.proj.weight": (D, arch.in_channels, p, p),
    }
    if arch.stem_layers is not None:
        s.update(_stem_shapes(arch.stem_layers, arch.in_channels))
        widths = STAGE_WIDTHS[: len(arch.stem_layers)]
        s["backbone.patch_embed.proj.weight"] = (D, widths[-1] if widths else STEM_WIDTH, p, p)
    if arch.patch_bias:
        s["backbone.patch_embed.proj.bias"] = (D,)
    if arch.final_norm:
        s.update({"backbone.norm.weight": (D,), "backbone.norm.bias": (D,)})
    if arch.distilled:
        s["backbone.dist_token"] = (1, 1, D)
    for i in range(arch.depth):
        s.update(
            _block_shapes(
                f"backbone.blocks.{i}", D, int(D * arch.mlp_ratio), arch.qkv_bias, arch.layer_scale_init is not None
            )
        )
    if arch.decode_head:
        s.update(_upernet_shapes(arch))
    dec, K = arch.decoder, arch.num_classes
    if dec and dec["name"] == "linear":
        s.update({"decoder.head.weight": (D, K), "decoder.head.bias": (K,)})
    elif dec:
        d = dec["d_model"]
        for j in range(dec["n_layers"]):
            s.update(_block_shapes(f"decoder.blocks.{j}", d, int(d * dec["mlp_ratio"]), dec["qkv_bias"]))
        s.update(
            {
                "decoder.cls_emb": (1, K, d),
                "decoder.proj_dec.weight": (D, d),
                "decoder.proj_dec.bias": (d,),
                "decoder.proj_patch": (d, d),
                "decoder.proj_classes": (d, d),
                "decoder.decoder_norm.weight": (d,),
                "decoder.decoder_norm.bias": (d,),
                "decoder.mask_norm.weight": (K,),
                "decoder.mask_norm.bias": (K,),
            }
        )
    return s


def model_config(arch: Arch, pretrained: Optional[str]) -> Dict[str, Any]:
    """The `model` section of a PaddleSeg config that builds exactly `arch` (and loads `pretrained`)."""
    backbone = arch.backbone_config()
    backbone.update({"drop_rate": 0.0, "attn_drop_rate": 0.0, "drop_path_rate": 0.1, "pretrained": None})
    if arch.decode_head:
        return {
            "type": "UPerNetViT",
            "num_classes": arch.num_classes,
            "backbone": backbone,
            "neck": arch.neck,
            "decode_head": dict(arch.decode_head),
            "auxiliary_head": arch.auxiliary_head,
            "pretrained": pretrained,
        }
    decoder = dict(arch.decoder) if arch.decoder else {"name": "linear"}
    if decoder["name"] == "mask_transformer":
        decoder.update({"dropout": 0.0, "drop_path_rate": 0.1})
    model = {
        "type": "Segmenter",
        "num_classes": arch.num_classes,
        "backbone": backbone,
        "decoder": decoder,
        "logits_resize": arch.logits_resize,
        "pretrained": pretrained,
    }
    if arch.decoder is None:  # backbone weights: the decoder is trained from scratch
        backbone["pretrained"], model["pretrained"] = pretrained, None
    return model

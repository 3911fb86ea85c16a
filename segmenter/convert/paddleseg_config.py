"""PaddleSeg's own Segmenter configs, run unchanged: their `LinearSegmenter` / `MaskSegmenter` on PaddleSeg's
`VisionTransformer` are built as our `Segmenter` on `SegmenterViT`, by the mapping the PaddleSeg weights importer
makes (families/paddleseg.py: LayerNorm eps 1e-5, bicubic pos-embed resampling, a mask decoder whose qkv bias is
PaddleSeg's `h_qkv_bias`, off by default). PaddleSeg 2.8's own classes do not run on paddle 3 (its VisionTransformer
loads `pretrained` unconditionally), so its configs would otherwise end in a traceback.

`translated(path, opts, parse)` is the hook where configs are loaded (engine/run.py load_config): a config whose
model is PaddleSeg's Segmenter, or that spells `test_config` as PaddleSeg's newer `test:`, is resolved (its `_base_`
chain merged by `parse`), translated, and written to `$SEGMENTER_CACHE/configs/` (one file per source path,
rewritten on every load); one line says so. `--opts` given with PaddleSeg's names (`model.h_depth=1`,
`model.backbone.epsilon=...`) are renamed to ours. Every other config passes through untouched.
"""

import hashlib
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from segmenter.convert.download import cache_root
from segmenter.convert.families.paddleseg import FAMILY as PADDLESEG

MODELS = ("LinearSegmenter", "MaskSegmenter")
# PaddleSeg 2.8's VisionTransformer arguments with their defaults (paddleseg/models/backbones/
# vision_transformer.py; tests/test_paddleseg_configs.py checks this table against the installed class), and the
# name each has in our SegmenterViT.
VIT_DEFAULTS: Dict[str, Any] = {
    "img_size": 224,
    "patch_size": 16,
    "in_channels": 3,
    "embed_dim": 768,
    "depth": 12,
    "num_heads": 12,
    "mlp_ratio": 4,
    "qkv_bias": False,
    "qk_scale": None,
    "drop_rate": 0.0,
    "attn_drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "norm_layer": "nn.LayerNorm",
    "epsilon": 1e-5,
    "final_norm": False,
    "pretrained": None,
}
VIT_NAMES = {"epsilon": "norm_eps"}  # every other kept argument has our name already
# MaskSegmenter's head arguments (paddleseg/models/segmenter.py) -> our mask_transformer decoder's; None: required.
MASK_DEFAULTS: Dict[str, Any] = {
    "h_embed_dim": None,
    "h_depth": None,
    "h_num_heads": None,
    "h_mlp_ratio": 4,
    "h_drop_rate": 0.0,
    "h_drop_path_rate": 0.0,
    "h_attn_drop_rate": 0.0,
    "h_qkv_bias": False,
}
MASK_NAMES = {
    "h_embed_dim": "d_model",
    "h_depth": "n_layers",
    "h_num_heads": "n_heads",
    "h_mlp_ratio": "mlp_ratio",
    "h_drop_rate": "dropout",
    "h_drop_path_rate": "drop_path_rate",
    "h_qkv_bias": "qkv_bias",
}
# --opts keys in PaddleSeg's names -> ours.
OPTS = {
    **{f"model.{k}": f"model.decoder.{v}" for k, v in MASK_NAMES.items()},
    **{f"model.backbone.{k}": f"model.backbone.{v}" for k, v in VIT_NAMES.items()},
}


class PaddleSegConfigError(ValueError):
    """A PaddleSeg Segmenter config our components cannot build exactly (one line naming the key)."""


def needs_translation(dic: Dict[str, Any]) -> bool:
    model = dic.get("model") if isinstance(dic.get("model"), dict) else {}
    return model.get("type") in MODELS or "test" in dic


def _vit(bb: Dict[str, Any], where: str) -> Dict[str, Any]:
    """PaddleSeg's VisionTransformer section -> our SegmenterViT section."""
    if not isinstance(bb, dict) or bb.get("type") != "VisionTransformer":
        kind = bb.get("type") if isinstance(bb, dict) else bb
        raise PaddleSegConfigError(
            f"config {where}: model.backbone.type is {kind!r}; PaddleSeg's LinearSegmenter / MaskSegmenter are "
            "built here on its VisionTransformer only (type: VisionTransformer)."
        )
    unknown = sorted(set(bb) - set(VIT_DEFAULTS) - {"type"})
    if unknown:
        raise PaddleSegConfigError(
            f"config {where}: model.backbone.{unknown[0]} is not an argument of PaddleSeg's VisionTransformer (it "
            f"would ignore it silently); its arguments are {sorted(VIT_DEFAULTS)}."
        )
    v = {**VIT_DEFAULTS, **{k: x for k, x in bb.items() if k != "type"}}
    if v["norm_layer"] != "nn.LayerNorm":
        raise PaddleSegConfigError(f"config {where}: model.backbone.norm_layer {v['norm_layer']!r}: only nn.LayerNorm.")
    head_dim = v["embed_dim"] // v["num_heads"]
    if v["qk_scale"] is not None and abs(v["qk_scale"] - head_dim**-0.5) > 1e-12:
        raise PaddleSegConfigError(
            f"config {where}: model.backbone.qk_scale {v['qk_scale']} is not head_dim ** -0.5 "
            f"({head_dim**-0.5:.6g}); SegmenterViT scales attention by head_dim ** -0.5 only."
        )
    out = {"type": "SegmenterViT"}
    for key in ("img_size", "patch_size", "in_channels", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias"):
        out[key] = v[key]
    out.update(
        {
            "distilled": False,
            "norm_eps": float(v["epsilon"]),
            "pos_embed_interp": PADDLESEG.pos_embed_interp,  # PaddleSeg resizes pos_embed bicubic (load and run)
            "drop_rate": v["drop_rate"],
            "attn_drop_rate": v["attn_drop_rate"],
            "drop_path_rate": v["drop_path_rate"],
            "final_norm": bool(v["final_norm"]),
            "pretrained": v["pretrained"],
        }
    )
    return out


def _mask_decoder(model: Dict[str, Any], where: str) -> Dict[str, Any]:
    """MaskSegmenter's h_* arguments -> our mask_transformer decoder."""
    missing = [k for k, d in MASK_DEFAULTS.items() if d is None and k not in model]
    if missing:
        raise PaddleSegConfigError(f"config {where}: MaskSegmenter needs model.{missing[0]} (PaddleSeg's too).")
    h = {**MASK_DEFAULTS, **{k: model[k] for k in MASK_DEFAULTS if k in model}}
    if h["h_attn_drop_rate"] != h["h_drop_rate"]:
        raise PaddleSegConfigError(
            f"config {where}: model.h_attn_drop_rate {h['h_attn_drop_rate']} differs from h_drop_rate "
            f"{h['h_drop_rate']}; our mask decoder has one dropout for both: set them equal."
        )
    dec = {"name": "mask_transformer", **{MASK_NAMES[k]: h[k] for k in MASK_NAMES}}
    dec["norm_eps"] = PADDLESEG.norm_eps  # PaddleSeg's head blocks and norms keep LayerNorm's default 1e-5
    return dec


def translate(dic: Dict[str, Any], where: str) -> Tuple[Dict[str, Any], List[str]]:
    """(the config with PaddleSeg's Segmenter sections as ours and `test:` as `test_config:`, what was done)."""
    out, done = dict(dic), []
    if "test" in out:
        if "test_config" in out:
            raise PaddleSegConfigError(
                f"config {where}: both test: and test_config: are given; keep one (PaddleSeg's newer test: is read "
                "as test_config:)."
            )
        out["test_config"] = out.pop("test")
        done.append("test: read as test_config:")
    model = out.get("model")
    if isinstance(model, dict) and model.get("type") in MODELS:
        kind = model["type"]
        allowed = {"type", "num_classes", "backbone", "pretrained"} | (
            set(MASK_DEFAULTS) if kind == "MaskSegmenter" else set()
        )
        unknown = sorted(set(model) - allowed)
        if unknown:
            raise PaddleSegConfigError(
                f"config {where}: model.{unknown[0]} is not an argument of PaddleSeg's {kind}; its arguments are "
                f"{sorted(allowed - {'type'})}."
            )
        ours: Dict[str, Any] = {"type": "Segmenter"}
        if "num_classes" in model:
            ours["num_classes"] = model["num_classes"]
        ours["backbone"] = _vit(model.get("backbone"), where)
        ours["decoder"] = _mask_decoder(model, where) if kind == "MaskSegmenter" else {"name": "linear"}
        ours["pretrained"] = model.get("pretrained")
        out["model"] = ours
        bb, dec = ours["backbone"], ours["decoder"]
        done.append(
            f"PaddleSeg's {kind} + VisionTransformer built as our Segmenter + SegmenterViT, as the PaddleSeg weights "
            f"importer maps them (LayerNorm eps {bb['norm_eps']:g}, {bb['pos_embed_interp']} pos-embed resampling, "
            + (f"mask decoder qkv bias {dec['qkv_bias']}" if kind == "MaskSegmenter" else "linear decoder")
            + f"; sides not a multiple of {bb['patch_size']} are padded where PaddleSeg drops them)"
        )
    return out, done


def translated_opts(opts: Optional[List[str]]) -> Optional[List[str]]:
    """--opts with PaddleSeg's key names (model.h_depth=1) renamed to ours (model.decoder.n_layers=1)."""
    if not opts:
        return opts
    out = []
    for opt in opts:
        key, eq, value = opt.partition("=")
        out.append(OPTS.get(key, key) + eq + value)
    return out


def cache_file(path: str) -> str:
    """Where the translation of the config at `path` is written: one file per source path."""
    tag = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    return os.path.join(cache_root(), "configs", tag, os.path.basename(path))


def translated(
    path: str, opts: Optional[List[str]], parse: Callable[[str], Dict[str, Any]]
) -> Tuple[str, Optional[List[str]]]:
    """(the config file to load, the --opts for it): path and opts themselves unless path is a PaddleSeg Segmenter
    config (or spells test:), whose translation is written to the cache and named in one line."""
    dic = parse(path)
    if not needs_translation(dic):
        return path, opts
    import yaml

    out, done = translate(dic, path)
    target = cache_file(path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    header = f"# {path} translated by segmenter/convert/paddleseg_config.py: {'; '.join(done)}.\n"
    tmp = f"{target}.partial-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(header + yaml.safe_dump(out, sort_keys=False))
    os.replace(tmp, target)  # several ranks may write it at once: each rename is whole
    print(f"config {path}: {'; '.join(done)}; translated config {target}", flush=True)
    return target, translated_opts(opts)

"""The PaddleSeg config `tools/convert.py --save-config` writes beside converted weights: a shipped dataset base
(an absolute `_base_`) plus the exact model the weights are, with what the weights cannot tell taken from the
base config's model section when it describes these weights."""

import os
from typing import Any, Dict, Optional

from segmenter.convert.arch import Arch, model_config
from segmenter.convert.family import ConversionError, Converted


def default_base_config() -> str:
    """The shipped ADE20K dataset base of this checkout."""
    return os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "_base_", "ade20k.yml"
    )


# Classes of a decoder built on backbone-only weights when neither --num-classes nor the base config says.
DEFAULT_CLASSES = 150  # ADE20K's
# NUM_CLASSES of the PaddleSeg datasets our shipped bases use (PaddleSeg checks model.num_classes against it).
DATASET_CLASSES = {"ADE20K": 150, "Cityscapes": 19, "PascalContext": 60}


def _dataset_classes(base: str) -> Optional[int]:
    """Class count of a dataset config's train_dataset, when it says or its type is a known dataset."""
    import yaml

    with open(base) as f:
        data = (yaml.safe_load(f) or {}).get("train_dataset") or {}
    return data.get("num_classes", DATASET_CLASSES.get(data.get("type")))


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolved_yaml(path: str) -> Dict[str, Any]:
    """A config with its `_base_` files merged under it, as PaddleSeg reads it (without importing paddle)."""
    import yaml

    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    bases = cfg.pop("_base_", [])
    merged: Dict[str, Any] = {}
    for b in [bases] if isinstance(bases, str) else bases:
        merged = _merge(merged, resolved_yaml(os.path.join(os.path.dirname(path), b)))
    return _merge(merged, cfg)


# Backbone keys a base config's model section must state as the weights show them before its other values (heads,
# eps, pos-embed interpolation, layer scale init) are taken for these weights.
SHOWN_BY_WEIGHTS = ("embed_dim", "depth", "patch_size")
ALSO_COMPARED = ("in_channels", "mlp_ratio", "qkv_bias", "distilled")


def base_model_facts(base: str, arch: Arch) -> Dict[str, Any]:
    """What the weights cannot tell, as the base config's model section states it, when that section describes
    these weights (the same width, depth, patch and decoder); {} otherwise."""
    model = resolved_yaml(base).get("model") or {}
    bb, dec = model.get("backbone") or {}, model.get("decoder") or {}
    if any(bb.get(k) != getattr(arch, k) for k in SHOWN_BY_WEIGHTS) or any(
        k in bb and bb[k] != getattr(arch, k) for k in ALSO_COMPARED
    ):
        return {}
    facts = {
        "num_heads": bb.get("num_heads"),
        "norm_eps": bb.get("norm_eps"),
        "pos_embed_interp": bb.get("pos_embed_interp"),
        "layer_scale_init": bb.get("layer_scale_init"),
    }
    if arch.decoder and arch.decoder["name"] == "mask_transformer":
        if dec.get("name") != "mask_transformer" or any(
            k in dec and dec[k] != arch.decoder[k] for k in ("d_model", "n_layers", "mlp_ratio", "qkv_bias")
        ):
            return {}
        facts.update({"decoder_heads": dec.get("n_heads"), "decoder_norm_eps": dec.get("norm_eps")})
    return {k: v for k, v in facts.items() if v is not None}


def config_text(
    conv: Converted, weights: str, base_config: Optional[str] = None, num_classes: Optional[int] = None
) -> str:
    """A complete PaddleSeg config: a shipped dataset base (via an absolute `_base_`) + the exact model."""
    import yaml

    base = os.path.abspath(base_config or default_base_config())
    if not os.path.isfile(base):
        raise FileNotFoundError(
            f"base config '{base}' does not exist; pass --base-config with a dataset config "
            f"such as configs/_base_/ade20k.yml."
        )
    arch = conv.arch
    base_classes = _dataset_classes(base)
    if arch.num_classes is None:
        arch = Arch(**{**arch.to_json(), "num_classes": num_classes or base_classes or DEFAULT_CLASSES})
    elif num_classes is not None and num_classes != arch.num_classes:
        raise ConversionError(f"--num-classes {num_classes} disagrees with the weights' {arch.num_classes} classes.")
    if base_classes is not None and base_classes != arch.num_classes:
        raise ConversionError(
            f"the weights have {arch.num_classes} classes but the base config '{base}' trains on "
            f"{base_classes}; PaddleSeg refuses that pair. Pass --base-config with a dataset of "
            f"{arch.num_classes} classes (e.g. a `type: Dataset` config with num_classes)."
        )
    cfg = {"_base_": base, "model": model_config(arch, os.path.abspath(weights))}
    header = (
        f"# Written by tools/convert.py from {os.path.abspath(conv.source)} ({conv.fmt}).\n"
        f"# The model section is the exact architecture of the weights; the rest comes from _base_.\n"
    )
    return header + yaml.safe_dump(cfg, sort_keys=False)

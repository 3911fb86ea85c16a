"""The PaddleSeg config `tools/convert.py --save-config` writes beside converted weights: a shipped dataset base
(an absolute `_base_`) plus the exact model the weights are, with what the weights cannot tell taken from the
base config's model section when it describes these weights."""

import os
from typing import Any, Dict, Optional

from segmenter.convert import files
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
# Model keys that change training, not the model the weights are (engine/checkpoint.py keeps them out of the run's
# identity for the same reason): no file shows them, so the written config takes them from what states them.
TRAINING_ONLY = ("drop_rate", "attn_drop_rate", "drop_path_rate", "drop_path_mode", "dropout")


def describes(model: Dict[str, Any], arch: Arch) -> bool:
    """Whether a config's model section is of these weights: the same width, depth, patch and decoder."""
    bb, dec = model.get("backbone") or {}, model.get("decoder") or {}
    if any(bb.get(k) != getattr(arch, k) for k in SHOWN_BY_WEIGHTS) or any(
        k in bb and bb[k] != getattr(arch, k) for k in ALSO_COMPARED
    ):
        return False
    if arch.decoder and arch.decoder["name"] == "mask_transformer":
        return dec.get("name") == "mask_transformer" and all(
            k not in dec or dec[k] == arch.decoder[k] for k in ("d_model", "n_layers", "mlp_ratio", "qkv_bias")
        )
    return True


def base_model_facts(base: str, arch: Arch) -> Dict[str, Any]:
    """What the weights cannot tell, as the base config's model section states it, when that section describes
    these weights (the same width, depth, patch and decoder); {} otherwise."""
    model = resolved_yaml(base).get("model") or {}
    if not describes(model, arch):
        return {}
    bb, dec = model.get("backbone") or {}, model.get("decoder") or {}
    facts = {
        "num_heads": bb.get("num_heads"),
        "norm_eps": bb.get("norm_eps"),
        "pos_embed_interp": bb.get("pos_embed_interp"),
        "layer_scale_init": bb.get("layer_scale_init"),
        "logits_resize": model.get("logits_resize"),
    }
    if arch.decoder and arch.decoder["name"] == "mask_transformer":
        facts.update({"decoder_heads": dec.get("n_heads"), "decoder_norm_eps": dec.get("norm_eps")})
    return {k: v for k, v in facts.items() if v is not None}


def with_stated(written: Dict[str, Any], stated: Dict[str, Any]) -> Dict[str, Any]:
    """`written` (a model section read from the weights) with what `stated` (the card or base config of these
    weights) says that weights cannot show: its training-only values and the keys `written` does not state.
    A sub-section is taken only from a stated one of the same type / decoder name; `pretrained` never."""
    out = dict(written)
    for k, v in stated.items():
        if k == "pretrained":
            continue
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            mine = out[k]
            if (mine.get("type"), mine.get("name")) == (v.get("type"), v.get("name")):
                out[k] = with_stated(mine, v)
        elif k not in out or k in TRAINING_ONLY:
            out[k] = v
    return out


def stated_model(conv: Converted, base: str) -> Dict[str, Any]:
    """The model section that states what these weights cannot show: the one recorded beside our own files (their
    .model.json, a checkpoint's state.json), else the base config's when it describes these weights; {} if none."""
    if conv.fmt in ("paddle", "torch"):
        card = files.read_model_card(conv.source)
        if card:
            return card
    model = resolved_yaml(base).get("model") or {}
    if model.get("type", "Segmenter") == ("UPerNetViT" if conv.arch.decode_head else "Segmenter") and describes(
        model, conv.arch
    ):
        return model
    return {}


def trained_config(weights: str) -> Optional[str]:
    """The config a training wrote beside the checkpoint folder holding `weights` (save_dir/config.yml, for
    save_dir/iter_N/model.pdparams or save_dir/best_model/model.pdparams), if there is one."""
    folder = os.path.dirname(os.path.abspath(weights))
    for candidate in (os.path.join(os.path.dirname(folder), "config.yml"), os.path.join(folder, "config.yml")):
        if os.path.isfile(os.path.join(folder, "state.json")) and os.path.isfile(candidate):
            return candidate
    return None


def config_text(
    conv: Converted, weights: str, base_config: Optional[str] = None, num_classes: Optional[int] = None
) -> str:
    """A complete PaddleSeg config: a shipped dataset base (via an absolute `_base_`) + the exact model, whose every
    value is the weights', or what their card or the base config's model section states, or the recipe's."""
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
        trained = trained_config(conv.source)
        fix = (
            f"pass --base-config {trained} (the config these weights were trained with)"
            if trained
            else f"pass --base-config with a dataset of {arch.num_classes} classes (the config the model was "
            f"trained with, e.g. its save_dir/config.yml, or a `type: Dataset` config with num_classes)"
        )
        raise ConversionError(
            f"the weights have {arch.num_classes} classes but the base config '{base}' trains on "
            f"{base_classes} (PaddleSeg refuses that pair); {fix}."
        )
    model = with_stated(model_config(arch, os.path.abspath(weights)), stated_model(conv, base))
    cfg = {"_base_": base, "model": model}
    header = (
        f"# Written by tools/convert.py from {os.path.abspath(conv.source)} ({conv.fmt}).\n"
        f"# The model section is the exact architecture of the weights; the rest comes from _base_.\n"
    )
    return header + yaml.safe_dump(cfg, sort_keys=False)

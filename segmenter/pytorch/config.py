"""Build the PyTorch twin from the same YAML configs PaddleSeg reads, without Paddle."""

import copy
import inspect
import os
from typing import Any, Dict, Union

import yaml

from segmenter.convert.config import DATASET_CLASSES
from segmenter.pytorch.segmenter import Segmenter
from segmenter.pytorch.upernet import UPerNetViT
from segmenter.pytorch.vit import SegmenterViT

COMPONENTS = {"Segmenter": Segmenter, "SegmenterViT": SegmenterViT, "UPerNetViT": UPerNetViT}


def _merge(base: Dict[str, Any], child: Dict[str, Any]) -> Dict[str, Any]:
    """PaddleSeg's `_base_` rule: dicts merge key by key, child wins; `_inherited_: False` replaces instead."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value.get("_inherited_", True):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
        if isinstance(out[key], dict):
            out[key].pop("_inherited_", None)
    return out


def load_config(path: str) -> Dict[str, Any]:
    """Read a YAML config and resolve its `_base_` chain (paths relative to the file that names them)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config '{path}' does not exist.")
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    bases = cfg.pop("_base_", [])
    merged: Dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _merge(merged, load_config(os.path.join(os.path.dirname(os.path.abspath(path)), base)))
    return _merge(merged, cfg)


def _build(cfg: Dict[str, Any], where: str) -> Any:
    cfg = dict(cfg)
    name = cfg.pop("type", None)
    if name not in COMPONENTS:
        raise ValueError(f"{where}.type is {name!r}; the PyTorch twin builds {sorted(COMPONENTS)}.")
    cls = COMPONENTS[name]
    allowed = list(inspect.signature(cls).parameters)
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise TypeError(f"{where} ({name}) got unknown key(s) {unknown}; its keys are {allowed}.")
    cfg = {k: _build(v, f"{where}.{k}") if isinstance(v, dict) and "type" in v else v for k, v in cfg.items()}
    return cls(**cfg)


def build_model(config: Union[str, Dict[str, Any]]) -> Segmenter:
    """The PyTorch `Segmenter` of a config file (or of an already loaded config dict)."""
    cfg = load_config(config) if isinstance(config, str) else config
    if "model" not in cfg:
        raise ValueError(f"config {config if isinstance(config, str) else '<dict>'} has no `model` section.")
    model = dict(cfg["model"])
    if "num_classes" not in model:  # as PaddleSeg's SegBuilder: the training set decides
        data = cfg.get("train_dataset") or {}
        num_classes = data.get("num_classes", DATASET_CLASSES.get(data.get("type")))
        if num_classes is None:
            raise ValueError(
                f"model.num_classes is not set and train_dataset type {data.get('type')!r} has no "
                f"known class count; set model.num_classes in the config."
            )
        model["num_classes"] = num_classes
    return _build(model, "model")

"""Config mistakes caught before anything is built: YAML syntax (with the line), unknown keys and types.

PaddleSeg ignores unknown top-level keys (`batch_sise: 8` trains with the default) and names an unknown
component `type` without suggesting the one meant; these checks name the file, the key and the close name.
"""

import difflib
import inspect
import os
from typing import Any, Dict, Iterable, List, Optional

import yaml

from segmenter.class_names import NAME_KEYS, read_names

# Top-level keys PaddleSeg's Config and SegBuilder read (paddleseg/cvlibs/{config,builder}.py), plus ours.
TOP_LEVEL = (
    "_base_",
    "_inherited_",
    "batch_size",
    "iters",
    "train_dataset",
    "val_dataset",
    "test_dataset",
    "optimizer",
    "lr_scheduler",
    "loss",
    "distill_loss",
    "model",
    "export",
    "test_config",
    "to_static_training",
)


class ConfigError(ValueError):
    """A config file that cannot describe the run it is meant to."""


def _close(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(n) for n in near)}?" if near else f"known: {', '.join(sorted(choices))}"


def check_yaml(path: str) -> None:
    """Parse path and its `_base_` chain; a syntax error names the file and the line."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        dic = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"config {path}: YAML syntax error at {where}: {problem}; fix the indentation or quoting there."
        ) from None
    if not isinstance(dic, dict):
        raise ConfigError(
            f"config {path}: holds a {type(dic).__name__}, not a mapping of keys such as model:, "
            "train_dataset:; pass a PaddleSeg-style YAML."
        )
    bases = dic.get("_base_") or []
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = os.path.join(os.path.dirname(path), base)
        if not os.path.isfile(base_path):
            raise ConfigError(f"config {path}: _base_ {base} ({base_path}) does not exist; fix the relative path.")
        check_yaml(base_path)


def _check_component(path: str, where: str, section: Any, manager, extra: tuple = ()) -> None:
    """`type` known to manager (with a close name), and every key an argument of its class (or one of extra)."""
    if not isinstance(section, dict) or "type" not in section:
        return
    kind = section["type"]
    if kind not in manager.components_dict:
        raise ConfigError(
            f"config {path}: {where}.type '{kind}' is not registered in PaddleSeg's "
            f"{getattr(manager, '_name', 'component')} manager; {_close(kind, manager.components_dict)}"
        )
    cls = manager.components_dict[kind]
    if not inspect.isclass(cls):
        return
    signature = inspect.signature(cls.__init__).parameters
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.values()):
        return  # a catch-all **kwargs (PaddleSeg's own classes): nothing to check against
    params = [n for n in signature if n != "self"] + list(extra)
    for key in section:
        if key != "type" and key not in params:
            raise ConfigError(f"config {path}: {where}.{key} is not an argument of {kind}; {_close(key, params)}")


def check_keys(path: str, dic: Dict[str, Any]) -> None:
    """Unknown top-level keys, unknown component types and unknown model/backbone keys are errors."""
    from paddleseg.cvlibs import manager

    for key in dic:
        if key not in TOP_LEVEL:
            raise ConfigError(f"config {path}: unknown top-level key '{key}'; {_close(key, TOP_LEVEL)}")
    model = dic.get("model")
    if isinstance(model, dict):
        _check_component(path, "model", model, manager.MODELS)
        _check_component(path, "model.backbone", model.get("backbone"), manager.BACKBONES)
    for name in ("train_dataset", "val_dataset"):
        section = dic.get(name)
        _check_component(path, name, section, manager.DATASETS, extra=NAME_KEYS)
        for i, t in enumerate((section or {}).get("transforms") or [] if isinstance(section, dict) else []):
            if isinstance(t, dict) and t.get("type") not in manager.TRANSFORMS.components_dict:
                raise ConfigError(
                    f"config {path}: {name}.transforms[{i}].type '{t.get('type')}' is not a "
                    "registered transform; "
                    f"{_close(str(t.get('type')), manager.TRANSFORMS.components_dict)}"
                )
    for i, t in enumerate((dic.get("loss") or {}).get("types") or []):
        if isinstance(t, dict) and t.get("type") not in manager.LOSSES.components_dict:
            raise ConfigError(
                f"config {path}: loss.types[{i}].type '{t.get('type')}' is not a registered loss; "
                f"{_close(str(t.get('type')), manager.LOSSES.components_dict)}"
            )


def take_class_names(path: str, dic: Dict[str, Any]) -> Optional[List[str]]:
    """The class names the dataset sections give (checked against num_classes), taken out of the sections so that
    PaddleSeg builds the dataset classes, which do not know these keys; None when no section gives any."""
    from paddleseg.cvlibs import manager

    found = {}
    for name in ("train_dataset", "val_dataset"):
        section = dic.get(name)
        if not isinstance(section, dict):
            continue
        names = read_names(section, f"config {path}: {name}")
        key = next((k for k in NAME_KEYS if k in section), None)
        for k in NAME_KEYS:
            section.pop(k, None)
        if names is None:
            continue
        cls = manager.DATASETS.components_dict.get(section.get("type"))
        n = (
            (dic.get("model") or {}).get("num_classes")
            or section.get("num_classes")
            or getattr(cls, "NUM_CLASSES", None)
        )
        if n is not None and len(names) != n:
            raise ConfigError(
                f"config {path}: {name}.{key} has {len(names)} names but num_classes is {n}; give one "
                "name per class, in class-index order."
            )
        found[name] = names
    if len(found) == 2 and found["train_dataset"] != found["val_dataset"]:
        raise ConfigError(
            f"config {path}: train_dataset and val_dataset give different class names; give them once "
            "(in either section) or make them equal."
        )
    return next(iter(found.values()), None)

"""Config mistakes caught before anything is built: YAML syntax (with the line), unknown keys and types, and
--opts values of the wrong type.

PaddleSeg ignores unknown top-level keys (`batch_sise: 8` trains with the default) and names an unknown
component `type` without suggesting the one meant; these checks name the file, the key and the close name.
"""

import ast
import collections.abc
import difflib
import inspect
import os
import types
import typing
from typing import Any, Dict, Iterable, List, Optional, Union

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


SHOWN_CONFIGS = 6  # YAML files an error lists before "and N more"


def _yaml_files(folder: str) -> List[str]:
    """The YAML files under folder, those outside `_base_` folders first (a `_base_` file is not run alone)."""
    found = [
        os.path.join(d, n)
        for d, _, names in os.walk(folder)
        for n in names
        if n.endswith((".yml", ".yaml")) and not n.startswith(".")
    ]
    return sorted(found, key=lambda p: ("_base_" in p.split(os.sep), p))


def _shipped_configs() -> Dict[str, str]:
    """{configs/<folder>/<name>.yml: its path} of the YAML files (not `_base_`) in configs/ of the current folder,
    else of the checkout this package sits in."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for parent in (".", here):
        folder = os.path.join(parent, "configs")
        if os.path.isdir(folder):
            found = [p for p in _yaml_files(folder) if "_base_" not in p.split(os.sep)]
            return {os.path.relpath(p, parent): os.path.normpath(p) for p in found}
    return {}


def _nearest_configs(path: str, n: int = 2) -> List[str]:
    """Up to n shipped configs closest to path: by file name, and by folder and name (configs/segmenter/x)."""
    stem = os.path.splitext(os.path.normpath(path))[0]

    def score(key: str) -> float:
        name = difflib.SequenceMatcher(None, os.path.basename(stem), os.path.basename(key)[: -len(".yml")])
        full = difflib.SequenceMatcher(None, stem, key[: -len(".yml")])
        return max(name.ratio(), full.ratio()) + full.ratio() / 100  # the folder breaks a tie of names

    configs = _shipped_configs()
    scored = sorted(((score(k), p) for k, p in configs.items()), reverse=True)
    return [p for r, p in scored[:n] if r >= 0.6]


def check_config_path(path: str) -> None:
    """A --config that is not a file: a ConfigError saying what it is and which YAML to pass instead (the folder's
    own YAML files, else the nearest shipped configs)."""
    if os.path.isfile(path):
        return
    if os.path.isdir(path):
        found = _yaml_files(path)
        if len(found) == 1:
            raise ConfigError(f"config {path} is a folder, not a YAML file; pass the YAML in it: --config {found[0]}")
        if found:
            more = f" (and {len(found) - SHOWN_CONFIGS} more)" if len(found) > SHOWN_CONFIGS else ""
            raise ConfigError(
                f"config {path} is a folder, not a YAML file; pass one of its {len(found)} YAML files with --config: "
                f"{', '.join(found[:SHOWN_CONFIGS])}{more}."
            )
        near = _nearest_configs(path)
        hint = f"the nearest in configs/: {', '.join(near)}" if near else "pass a YAML from configs/"
        raise ConfigError(f"config {path} is a folder holding no YAML file; {hint}.")
    near = _nearest_configs(path)
    hint = f"did you mean {' or '.join(near)}?" if near else "pass --config with a YAML from configs/."
    raise ConfigError(f"config {path} does not exist; {hint}")


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


INHERIT_KEY, BASE_KEY = "_inherited_", "_base_"  # PaddleSeg 2.8's names (paddleseg/cvlibs/config.py)


def _provenance(path: str) -> Dict[str, Any]:
    """The config as PaddleSeg's parse_from_yaml merges it with its `_base_` files, each value replaced by the file
    that gave it: a file's own keys win over its bases', an earlier base's over a later one's, and a section saying
    `_inherited_: False` replaces the base's section instead of merging into it (as PaddleSeg, for the first base)."""

    def tag(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: v if k == INHERIT_KEY else tag(v) for k, v in node.items()}
        return path

    def merge(dic: Dict[str, Any], base: Dict[str, Any]) -> Dict[str, Any]:
        dic, base = dict(dic), dict(base)
        if not dic.get(INHERIT_KEY, True):
            dic.pop(INHERIT_KEY)
            return dic
        for k, v in dic.items():
            base[k] = merge(v, base[k]) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base

    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    bases = raw.pop(BASE_KEY, None) or []
    dic = tag(raw)
    for base in [bases] if isinstance(bases, str) else bases:
        dic = merge(dic, _provenance(os.path.join(os.path.dirname(path), base)))
    return dic


def inherited_from(path: str, key: str) -> Optional[str]:
    """The `_base_` file (of config path's chain) that gave key, or None where path states it itself."""
    node: Any = _provenance(path)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, str) and os.path.abspath(node) != os.path.abspath(path) else None


def checker_error(path: str, dic: Dict[str, Any], e: RuntimeError) -> Optional[ConfigError]:
    """PaddleSeg's ConfigChecker failure (a RuntimeError of 4 lines naming the rule) as one line; for train and
    val sets of different types, where each type came from. None for any other RuntimeError."""
    text = str(e)
    if "The failed rule is" not in text:
        return None
    rule, _, message = text.split("The failed rule is ", 1)[1].partition(", and the error message is:")
    message = " ".join(message.split()).rstrip(".")
    types = {n: (dic.get(n) or {}).get("type") for n in ("train_dataset", "val_dataset")}
    if "train_dataset and val_dataset" in message and all(types.values()):
        told = [f"{n}.type {t} (from {inherited_from(path, f'{n}.type') or path})" for n, t in types.items()]
        message += (
            f": {' and '.join(told)}; give both sections one type (with `{INHERIT_KEY}: False` in each to replace "
            "a base's sections)"
        )
    return ConfigError(f"config {path}: PaddleSeg's check {rule} failed: {message}.")


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
        if key == INHERIT_KEY:
            raise ConfigError(
                f"config {path}: {where} says {INHERIT_KEY}: {section[key]}, but no _base_ file has a {where} section "
                f"to replace (PaddleSeg then passes the key on to {kind}); remove that line."
            )
        if key != "type" and key not in params:
            base = inherited_from(path, f"{where}.{key}")
            if base:  # PaddleSeg merged a shipped section into the user's: the user never wrote this key
                raise ConfigError(
                    f"config {path}: {where}.{key} is not an argument of {kind}, and {path} does not state it: it "
                    f"comes from {base}, a _base_ of it, whose {where} PaddleSeg merges into yours; add "
                    f"`{INHERIT_KEY}: False` to {where} in {path} to replace the base's section instead."
                )
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


def check_num_classes(path: str, dic: Dict[str, Any]) -> None:
    """model.num_classes against the class count of a train set whose class fixes it (ADE20K's 150, ...): PaddleSeg's
    builder asserts on the pair with a traceback when the model is built."""
    from paddleseg.cvlibs import manager

    n, data = (dic.get("model") or {}).get("num_classes"), dic.get("train_dataset") or {}
    cls = manager.DATASETS.components_dict.get(data.get("type")) if data.get("type") != "Dataset" else None
    fixed = getattr(cls, "NUM_CLASSES", None)
    if n is not None and fixed is not None and "num_classes" not in data and n != fixed:
        raise ConfigError(
            f"config {path}: model.num_classes is {n} but train_dataset {data.get('type')} has {fixed} classes; "
            f"set model.num_classes: {fixed}, or train on your own classes with type: Dataset (and num_classes: {n})."
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


# --opts values whose type no component signature gives: PaddleSeg's top-level keys and our test_config keys
# (engine/run.py test_kwargs).
KNOWN_TYPES = {
    "batch_size": int,
    "iters": int,
    "to_static_training": bool,
    "test_config.is_slide": bool,
    "test_config.crop_size": List[int],
    "test_config.stride": List[int],
    "test_config.fast_path": Optional[bool],
}
# The manager each section's `type` is looked up in, by the section's key path; others are searched by name.
SECTION_MANAGERS = {
    "model": "MODELS",
    "model.backbone": "BACKBONES",
    "train_dataset": "DATASETS",
    "val_dataset": "DATASETS",
    "test_dataset": "DATASETS",
    "optimizer": "OPTIMIZERS",
}
UNIONS = (Union, types.UnionType)  # Optional[int], int | None
_NUMBER = Union[int, float]  # what an int or float a config states may become (2 -> 2.5 keeps its meaning)


def _describe(hint: Any) -> str:
    """'an integer', 'a list of integers', 'an integer or a list of integers', ... for an error line."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in UNIONS:
        parts = [a for a in args if a is not type(None)]
        if set(parts) == {int, float}:
            text = "a number"
        else:
            text = " or ".join(_describe(a) for a in parts)
        return text + (" or null" if type(None) in args else "")
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        inner = {a for a in args if a is not Ellipsis}
        plural = {int: "integers", float: "numbers", _NUMBER: "numbers", bool: "booleans", str: "texts"}
        return "a list" + (f" of {plural[inner.pop()]}" if len(inner) == 1 and next(iter(inner)) in plural else "")
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        return "a mapping {key: value}"
    names = {int: "an integer", float: "a number", bool: "True or False", str: "a text", type(None): "null"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether value (as --opts parsed it) has the type hint's type; a hint this cannot read accepts anything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if origin in UNIONS:
        return any(_fits(value, a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(
            _fits(v, inner[0] if len(set(inner)) == 1 else Any) for v in value
        )
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint) if isinstance(hint, type) else True


def _hint_of_value(value: Any) -> Any:
    """The type a config's stated value gives its key (None: it says nothing)."""
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, str):
        return type(value)
    if isinstance(value, (int, float)):
        return _NUMBER
    if isinstance(value, (list, tuple)):
        kinds = {_hint_of_value(v) for v in value}
        return List[kinds.pop()] if len(kinds) == 1 and None not in kinds else list
    if isinstance(value, dict):
        return dict
    return None


def _component(section_path: str, section: dict):
    """The class a config section's `type` names, from PaddleSeg's managers (or paddle's lr schedulers)."""
    from paddleseg.cvlibs import manager

    kind = section.get("type")
    if not isinstance(kind, str):
        return None
    if section_path == "lr_scheduler":
        import paddle

        return getattr(paddle.optimizer.lr, kind, None)
    name = SECTION_MANAGERS.get(section_path) or ("BACKBONES" if section_path.endswith(".backbone") else None)
    managers = [getattr(manager, name)] if name else [getattr(manager, n) for n in set(SECTION_MANAGERS.values())]
    return next((m.components_dict[kind] for m in managers if kind in m.components_dict), None)


def _signature_hint(cls, key: str) -> tuple:
    """(type hint, where it was read) of argument key of cls: its annotation, else (None, '') and its default."""
    if cls is None or not inspect.isclass(cls):
        return None, "", inspect.Parameter.empty
    param = inspect.signature(cls.__init__).parameters.get(key)
    if param is None:
        return None, "", inspect.Parameter.empty
    try:
        hint = typing.get_type_hints(cls.__init__).get(key)
    except Exception:  # noqa: BLE001 (an annotation that does not resolve: read the default instead)
        hint = None
    return hint, f"{cls.__name__}'s {key}" if hint else "", param.default


def _expected(key: str, dic: Dict[str, Any]) -> tuple:
    """(type hint, where it was read) for an --opts key: a known key, the section component's annotation, the
    config's own value, the component's default; (None, '') when none says."""
    *parents, last = key.split(".")
    section = dic
    for part in parents:
        section = section.get(part) if isinstance(section, dict) else None
    section = section if isinstance(section, dict) else {}
    stated = f"the config has {section[last]!r}" if section.get(last) is not None else ""
    if key in KNOWN_TYPES:
        return KNOWN_TYPES[key], stated
    cls = _component(".".join(parents), section)
    hint, where, default = _signature_hint(cls, last)
    if hint is not None:
        return hint, "; ".join(w for w in (where, stated) if w)
    if _hint_of_value(section.get(last)) is not None:
        return _hint_of_value(section.get(last)), stated
    if default is not inspect.Parameter.empty and _hint_of_value(default) is not None:
        return _hint_of_value(default), f"{cls.__name__}'s {last} defaults to {default!r}"
    return None, ""


def _paths_ending(dic: Dict[str, Any], parts: List[str], prefix: str = "") -> List[str]:
    """Full paths of the config's sections that end in parts (`backbone` -> `model.backbone`)."""
    found = []
    for k, v in dic.items():
        if isinstance(v, dict):
            full = f"{prefix}{k}"
            if full.split(".")[-len(parts) :] == parts:
                found.append(full)
            found += _paths_ending(v, parts, full + ".")
    return found


def _literal(text: str) -> Any:
    """The value PaddleSeg's Config makes of an --opts value: a Python literal, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_opts(path: str, dic: Dict[str, Any], opts: Optional[List[str]]) -> Optional[List[str]]:
    """--opts key=value checked against the type each key takes (the component's signature, the config's value):
    a mistyped value is a ConfigError naming the key, the value and the type, instead of a traceback from deep in
    PaddleSeg. Returns the opts as PaddleSeg's Config should read them: a value spelled the YAML way where the key
    takes a bool (`is_slide=false`, which PaddleSeg would keep as the truthy text 'false') or text that Python
    reads as a number (`dataset_root=2024`) is re-spelled to mean what was written."""
    if not opts:
        return opts
    out = []
    for item in opts:
        if "=" not in item:
            raise ConfigError(f"--opts {item}: give key=value, e.g. model.backbone.depth=1.")
        key, text = item.split("=", 1)
        parts, node = key.split("."), dic
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:i]) or "the config's top level"
                known = list(node) if isinstance(node, dict) else []
                close = difflib.get_close_matches(part, known, 1, 0.6)
                near = [".".join(parts[:i] + close)] if close else _paths_ending(dic, parts[i:-1])
                say = f"did you mean {' or '.join(near)}?" if near else f"it has {', '.join(known)}."
                raise ConfigError(
                    f"--opts {item}: {where} has no section '{part}' in config {path}; {say} Keys are full paths, "
                    "e.g. model.backbone.depth=1."
                )
            node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--opts {item}: {'.'.join(parts[:-1])} is {node!r}, not a section (config {path}).")
        hint, where = _expected(key, dic)
        value = _literal(text)
        if hint is None or _fits(value, hint):
            out.append(item)
        elif _fits(True, hint) and text.lower() in ("true", "false", "yes", "no", "on", "off"):
            out.append(f"{key}={text.lower() in ('true', 'yes', 'on')}")
        elif _fits(text, hint) and not isinstance(value, (list, tuple, dict)):
            out.append(f"{key}={text!r}")
        else:
            got = f"the text {value!r}" if isinstance(value, str) else f"{value!r} ({_describe(type(value))})"
            hint_text = " (a list is written [1, 2], in quotes for the shell)" if "list" in _describe(hint) else ""
            where = f" ({where})" if where else ""
            raise ConfigError(f"--opts {item}: {key} takes {_describe(hint)}{where}, got {got}{hint_text}.")
    return out

"""What a checkpoint family is: one row of the registry (convert/families/__init__.py) that the shared pipeline
(convert/core.py) drives. A family states what its files look like (`detect`), how their keys become ours
(`renames` / `drops`, or a `rename` of its own), and what its models did that weights cannot show (LayerNorm eps,
pos-embed interpolation, `overrides`); the few steps only it needs are its hooks.
"""

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from segmenter.convert.arch import Arch
from segmenter.convert.keymaps import BARE_VIT_PREFIXES, Rename

# (state as canonical keys, source keys dropped on purpose, architecture facts read from the content)
Renamed = Tuple[Dict[str, np.ndarray], List[str], Dict[str, Any]]


class ConversionError(ValueError):
    """Source keys left unused, target keys not produced, or shapes that do not match."""


@dataclass
class Converted:
    """Canonical weights plus what is known about them."""

    state: Dict[str, np.ndarray]
    arch: Arch
    fmt: str
    source: str
    dropped: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Family:
    """A checkpoint family, as the pipeline uses it: detect -> rename -> layout -> facts -> finish -> check.

    Args:
        name: the `--from` value.
        detect: (extension, keys, safetensors metadata) -> whether a file is this family's. The registry tries
            the families in its order, so a rule may rely on the rows before it having said no.
        norm_eps, pos_embed_interp: what the family trained with (weights cannot tell).
        torch_layout: its Linear weights are stored [out, in] (PyTorch) rather than [in, out] (Paddle, Flax).
        renames, drops: its key-map table; every source key is renamed by the first matching rule or dropped.
        rename: replaces the table step when the family needs more than renames (reshapes, split kernels).
        overrides: what else its models do that weights cannot tell (Arch fields).
        facts: (path, metadata) -> Arch fields recorded beside or inside the file (a variant.yml, a model card).
        finish: (state, overrides, path) -> state, after the layout change: a family's last fix-ups or refusals.
    """

    name: str
    detect: Callable[[str, Sequence[str], Mapping[str, str]], bool]
    norm_eps: float
    pos_embed_interp: str
    torch_layout: bool
    renames: Sequence[Rename] = ()
    drops: Sequence[str] = ()
    rename: Optional[Callable[[Mapping[str, Any], str], Renamed]] = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    facts: Optional[Callable[[str, Mapping[str, str]], Dict[str, Any]]] = None
    finish: Optional[Callable[[Dict[str, np.ndarray], Dict[str, Any], str], Dict[str, np.ndarray]]] = None


def has_prefix(keys: Sequence[str], *prefixes: str) -> bool:
    """Whether any key starts with one of `prefixes` (the detection rules' building block)."""
    return any(k.startswith(prefixes) for k in keys)


def bare_vit(keys: Sequence[str]) -> bool:
    """A ViT state dict without a `backbone.` prefix (ours, PaddleSeg's and timm's backbone files)."""
    return has_prefix(keys, *BARE_VIT_PREFIXES)


def apply_table(
    raw: Mapping[str, Any], renames: Sequence[Rename], drops: Sequence[str], source: str, fmt: str
) -> Tuple[Dict[str, Any], List[str]]:
    """Rename every key of `raw` by the first matching rule; keys matching `drops` are left out on purpose."""
    out, dropped, unused, clashes = {}, [], [], []
    for key, value in raw.items():
        if any(re.fullmatch(d, key) for d in drops):
            dropped.append(key)
            continue
        for pattern, template in renames:
            m = re.fullmatch(pattern, key)
            if m:
                target = m.expand(template)
                if target in out:
                    clashes.append(f"{key} -> {target}")
                out[target] = value
                break
        else:
            unused.append(key)
    if unused or clashes:
        lines = [f"'{source}' ({fmt} layout) cannot be converted:"]
        if unused:
            lines.append(f"  keys no rule maps ({len(unused)}): {sorted(unused)[:20]}")
        if clashes:
            lines.append(f"  keys mapped twice: {clashes[:20]}")
        lines.append("  If the file is another family, pass --from (`python tools/convert.py --help` lists them).")
        raise ConversionError("\n".join(lines))
    return out, dropped


def table_rename(family: Family, raw: Mapping[str, Any], source: str) -> Renamed:
    """The default rename step: the family's table, values as arrays."""
    state, dropped = apply_table(raw, family.renames, family.drops, source, family.name)
    return {k: np.asarray(v) for k, v in state.items()}, dropped, {}

"""Small shared builders for the tests."""

import subprocess
from typing import Any, Dict, Iterable, List

import pytest

from segmenter.models import VIT_PRESETS, Segmenter, SegmenterViT


def tiered(values: Iterable[Any], fast: Iterable[Any]) -> List[Any]:
    """Parametrize values with every one not in `fast` marked slow: a table's cheapest rows stay in the fast tier
    (`pytest -m "not slow"`), the whole suite runs them all. Each name in `fast` must be one of the values; a tuple
    value is one row of several argnames."""
    values, fast = list(values), list(fast)
    missing = [f for f in fast if f not in values]
    assert not missing, f"tiered: {missing} not among the parametrized values"
    slow = pytest.mark.slow
    return [
        v if v in fast else pytest.param(*v, marks=slow) if isinstance(v, tuple) else pytest.param(v, marks=slow)
        for v in values
    ]


# Shipped configs (under configs/, without .yml) that equal another but for `iters` once their bases and defaults are
# resolved: the 80k and 160k schedules of one recipe, and ViT-B and DeiT-B with LN and MLN (one recipe started from
# other weights, which no test loads). A test that runs each config with its own `iters` (or none) runs the twin
# instead; tests/test_registry_and_configs.py::test_config_twins_differ_only_in_iters holds each pair to it.
CONFIG_TWINS = {
    "upernet_vit/upernet_deit_b16_ade20k_512x512_80k": "upernet_vit/upernet_deit_b16_ade20k_512x512_160k",
    "upernet_vit/upernet_deit_b16_v013_ade20k_512x512_160k": "upernet_vit/upernet_deit_b16_v013_ade20k_512x512_80k",
    "upernet_vit/upernet_deit_s16_ade20k_512x512_80k": "upernet_vit/upernet_deit_s16_ade20k_512x512_160k",
    "upernet_vit/upernet_deit_s16_v013_ade20k_512x512_160k": "upernet_vit/upernet_deit_s16_v013_ade20k_512x512_80k",
    "upernet_vit/upernet_vit_b16_ln_mln_ade20k_512x512_160k": "upernet_vit/upernet_deit_b16_ln_mln_ade20k_512x512_160k",
    "upernet_vit/upernet_vit_b16_mln_ade20k_512x512_160k": "upernet_vit/upernet_vit_b16_mln_ade20k_512x512_80k",
    "upernet_vit/upernet_vit_b16_v013_ade20k_512x512_160k": "upernet_vit/upernet_vit_b16_v013_ade20k_512x512_80k",
}


def tiny_vit(preset: str = "tiny", depth: int = 1, patch_size: int = 16, img_size: int = 32, **kw: Any) -> SegmenterViT:
    """A preset's width and heads with few blocks, so tests stay fast."""
    embed_dim, _, num_heads = VIT_PRESETS[preset]
    return SegmenterViT(
        img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads, **kw
    )


def decoder_cfg(name: str, d_model: int, **kw: Any) -> Dict[str, Any]:
    if name == "linear":
        return {"name": "linear"}
    return {"name": "mask_transformer", "n_layers": 2, "d_model": d_model, "n_heads": max(1, d_model // 64), **kw}


def tiny_segmenter(decoder: str = "linear", num_classes: int = 5, preset: str = "tiny", **vit_kw: Any) -> Segmenter:
    vit = tiny_vit(preset, **vit_kw)
    return Segmenter(num_classes, vit, decoder_cfg(decoder, vit.embed_dim))


def tool_exit_code(name: str, argv: list) -> int:
    """Run tools/<name> in this process exactly as its command line would and return its exit status (the tools
    end with `sys.exit(run_cli(main, args))`); any other exception propagates. Afterwards the process hands back
    what the run freed (tests/memory.py): a train run leaves ~1 GB in glibc's heap, which the next tool run's peak
    would stack on."""
    import os
    import runpy
    import sys

    from tests.memory import hand_back

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    old = sys.argv
    sys.argv = [name, *argv]
    try:
        runpy.run_path(os.path.join(root, "tools", name), run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
        hand_back()


def tool_result(name: str, argv: list, capsys) -> subprocess.CompletedProcess:
    """tools/<name> run in this process (`tool_exit_code`), as `subprocess.run(..., capture_output=True, text=True)`
    would report it: its exit status and what it printed to stdout and stderr (read through pytest's capsys)."""
    capsys.readouterr()
    code = tool_exit_code(name, argv)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([name, *argv], code, out, err)


def run_tool_in_process(name: str, argv: list) -> None:
    """tools/<name> run in this process (`tool_exit_code`); its exit status must be 0. A user error is exit 1 with
    the one-line message on stderr, which then fails the calling test."""
    code = tool_exit_code(name, argv)
    assert code == 0, f"tools/{name} {' '.join(map(str, argv))} exited {code} (its stderr is above)"

"""Run our Paddle model and its PyTorch twin on the same input with the same weights, and measure the gap.

Imports both frameworks and segmenter.convert, so it lives above them (segmenter.convert itself needs neither
framework); used by tools/parity.py, benchmarks/ and parity_tests/.
"""

import copy
import importlib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from segmenter.convert.layout import to_layout

# Default pass/fail bounds (fp32): the acceptance numbers.
MAX_ABS_TOL = 1e-4
REL_L2_TOL = 1e-5


@dataclass
class Gap:
    """How far two logit tensors are apart."""

    max_abs: float
    rel_l2: float
    argmax_agree: float  # fraction of pixels whose arg-max class agrees
    n_disagree: int = 0  # pixels whose arg-max differs
    tie_margin: float = 0.0  # largest top-2 logit margin (in `a`) among those pixels

    def ok(self, max_abs: float = MAX_ABS_TOL, rel_l2: float = REL_L2_TOL, allow_ties: bool = False) -> bool:
        """Within both bounds, and arg-max agrees everywhere; with `allow_ties`, a pixel may disagree only if
        its two best classes are closer than twice the measured max|diff| (a tie at this precision)."""
        argmax_ok = self.n_disagree == 0 or (allow_ties and self.tie_margin <= 2 * self.max_abs)
        return self.max_abs <= max_abs and self.rel_l2 <= rel_l2 and argmax_ok

    def __str__(self) -> str:
        text = f"max|diff|={self.max_abs:.2e} relL2={self.rel_l2:.2e} argmax={100 * self.argmax_agree:.4f}%"
        if self.n_disagree:
            text += f" ({self.n_disagree} px differ, top-2 margin there <= {self.tie_margin:.1e})"
        return text


def gap(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 22) -> Gap:
    """Max abs difference, relative L2 error |a-b|/|a| and arg-max agreement over axis 1 of [B, K, H, W]. Computed in
    float64 a slab of rows at a time (about `chunk` values each): on whole 150-class logits at 512x512 (157 MB each)
    the float64 copies, their difference and the sort at once took 1.8 GB."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    a4, b4 = (a.reshape(1, 1, -1, 1), b.reshape(1, 1, -1, 1)) if a.ndim != 4 else (a, b)
    rows = max(1, chunk // max(1, a4.shape[1] * a4.shape[3]))
    max_abs, sq_diff, sq_a, n_disagree, margin = 0.0, 0.0, 0.0, 0, 0.0
    for i in range(a4.shape[0]):
        for r in range(0, a4.shape[2], rows):
            a64, b64 = a4[i, :, r : r + rows].astype(np.float64), b4[i, :, r : r + rows].astype(np.float64)
            d = a64 - b64
            max_abs = max(max_abs, float(np.abs(d).max(initial=0.0)))
            sq_diff += float((d * d).sum())
            sq_a += float((a64 * a64).sum())
            if a.ndim == 4:
                differ = a4[i, :, r : r + rows].argmax(0) != b4[i, :, r : r + rows].argmax(0)  # [rows, W]
                if differ.any():
                    top2 = np.sort(a64[:, differ], axis=0)[-2:]  # second best, best at the differing pixels
                    margin = max(margin, float((top2[1] - top2[0]).max()))
                    n_disagree += int(differ.sum())
    rel = float(np.sqrt(sq_diff) / max(np.sqrt(sq_a), 1e-30))
    if a.ndim != 4:
        return Gap(max_abs, rel, 1.0)
    pixels = a.shape[0] * a.shape[2] * a.shape[3]
    return Gap(max_abs, rel, float(1.0 - n_disagree / max(pixels, 1)), n_disagree, margin)


def paddle_state(model) -> Dict[str, np.ndarray]:
    """Canonical weights of a Paddle layer."""
    return {k: v.numpy() for k, v in model.state_dict().items()}


def torch_state(model) -> Dict[str, np.ndarray]:
    """Canonical (Paddle-layout) weights of a twin module."""
    return to_layout({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, "paddle", "torch")


def load_into_torch(model, canonical: Mapping[str, np.ndarray]) -> None:
    """Set a twin module from canonical weights (strictly)."""
    from segmenter.pytorch.weights import load_state_dict_strict

    load_state_dict_strict(model, to_layout(canonical, "torch"), "<canonical weights>")


def load_into_paddle(model, canonical: Mapping[str, np.ndarray]) -> None:
    """Set a Paddle layer from canonical weights (strictly)."""
    from segmenter.models.weights import load_state_dict_strict

    load_state_dict_strict(model, canonical, "<canonical weights>")


def build_model(model_cfg: Dict[str, Any], framework: str):
    """The model of one `model` config section (Segmenter or UPerNetViT) in eval mode: "paddle" for ours, "torch"
    for the twin. Imports that framework only (the twin builds on a machine without Paddle)."""
    lib = importlib.import_module({"paddle": "segmenter.models", "torch": "segmenter.pytorch"}[framework])
    cfg = copy.deepcopy(model_cfg)
    name = cfg.pop("type", "Segmenter")
    bb = dict(cfg.pop("backbone"))
    bb.pop("type", None)
    model = getattr(lib, name)(backbone=lib.SegmenterViT(**bb), **cfg)
    model.eval()
    return model


def build_pair(model_cfg: Dict[str, Any]) -> Tuple[Any, Any]:
    """(Paddle model, PyTorch model) built from one `model` config section, in eval mode."""
    return build_model(model_cfg, "paddle"), build_model(model_cfg, "torch")


def run_paddle(model, x: np.ndarray) -> np.ndarray:
    import paddle

    with paddle.no_grad():
        return model(paddle.to_tensor(x))[0].numpy()


def run_torch(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x))[0].numpy()


def compare(paddle_model, torch_model, x: np.ndarray) -> Gap:
    """Gap between the two frameworks' logits on the same [B, C, H, W] float32 input."""
    return gap(run_paddle(paddle_model, x), run_torch(torch_model, x))


def tiny_model_cfg(
    preset: str,
    decoder: str,
    num_classes: int = 5,
    img_size: int = 32,
    depth: int = 2,
    pos_embed_interp: str = "bilinear",
    decoder_qkv_bias: bool = True,
) -> Dict[str, Any]:
    """A `model` config with a preset's width and heads but `depth` blocks and a small `img_size` (for tests)."""
    from segmenter.pytorch.vit import VIT_PRESETS

    D, _, heads = VIT_PRESETS[preset]
    dec: Dict[str, Any] = {"name": "linear"}
    if decoder == "mask_transformer":
        dec = {
            "name": "mask_transformer",
            "n_layers": 2,
            "d_model": D,
            "n_heads": max(1, D // 64),
            "mlp_ratio": 4,
            "dropout": 0.0,
            "drop_path_rate": 0.0,
            "qkv_bias": decoder_qkv_bias,
            "norm_eps": 1e-5,
        }
    return {
        "type": "Segmenter",
        "num_classes": num_classes,
        "backbone": {
            "type": "SegmenterViT",
            "img_size": img_size,
            "patch_size": 16,
            "embed_dim": D,
            "depth": depth,
            "num_heads": heads,
            "mlp_ratio": 4,
            "qkv_bias": True,
            "norm_eps": 1e-5,
            "pos_embed_interp": pos_embed_interp,
        },
        "decoder": dec,
    }


# The input sizes the sweep and the tests cover: (batch, H, W) for a 32 px / patch 16 model.
SWEEP_SIZES: Sequence[Tuple[int, int, int]] = ((1, 32, 32), (1, 32, 48), (1, 40, 57), (2, 64, 80))


def sweep(
    presets: Sequence[str] = ("tiny", "small", "base"),
    decoders: Sequence[str] = ("linear", "mask_transformer"),
    sizes: Sequence[Tuple[int, int, int]] = SWEEP_SIZES,
    seeds: Sequence[int] = (0, 1, 2),
    depth: int = 2,
    interps: Sequence[str] = ("bilinear", "bicubic"),
) -> List[Dict[str, Any]]:
    """Largest gap per preset x decoder over sizes, seeds and pos-embed interpolations (random weights)."""
    import paddle

    rows = []
    for preset in presets:
        for dec in decoders:
            worst = Gap(0.0, 0.0, 1.0)
            for interp in interps:
                for seed in seeds:
                    paddle.seed(seed)
                    p, t = build_pair(tiny_model_cfg(preset, dec, depth=depth, pos_embed_interp=interp))
                    load_into_torch(t, paddle_state(p))
                    for b, h, w in sizes:
                        x = np.random.default_rng(seed).standard_normal((b, 3, h, w)).astype(np.float32)
                        g = compare(p, t, x)
                        worst = Gap(
                            max(worst.max_abs, g.max_abs),
                            max(worst.rel_l2, g.rel_l2),
                            min(worst.argmax_agree, g.argmax_agree),
                        )
            rows.append({"preset": preset, "decoder": dec, "gap": worst})
    return rows


def image_input(path: Optional[str], size: Optional[Sequence[int]], seed: int = 0) -> np.ndarray:
    """[1, 3, H, W] float32: an image normalised with mean = std = 0.5, or a seeded random one of `size`."""
    if path:
        from PIL import Image

        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        return ((img - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()  # [H, W, 3] -> [1, 3, H, W]
    h, w = size if size else (512, 512)
    return np.random.default_rng(seed).uniform(-1, 1, (1, 3, int(h), int(w))).astype(np.float32)

"""Paddle model vs its PyTorch twin, weights exported in both directions, Ti/S/B widths (depth 2) x decoders x sizes."""

import functools

import numpy as np
import paddle
import pytest
import torch

from segmenter.parity import (
    MAX_ABS_TOL,
    REL_L2_TOL,
    SWEEP_SIZES,
    build_pair,
    compare,
    gap,
    load_into_paddle,
    load_into_torch,
    paddle_state,
    tiny_model_cfg,
    torch_state,
)
from tests.helpers import tiered

PRESETS = ("tiny", "small", "base")
DECODERS = ("linear", "mask_transformer")
VECTOR_STD = 0.02  # spread given to every 1-D parameter (biases, LayerNorm weight and bias), as the matrices get


def move_off_init(model, seed: int) -> None:
    """Add N(0, VECTOR_STD) to every 1-D parameter of a Paddle or PyTorch model, in place.

    At init every bias is 0 and every LayerNorm is (1, 0): a twin that drops a bias or a norm's affine part would
    match there; the weight matrices are already random (trunc-normal). With a spread of 0.1 both frameworks stay
    ~5e-6 (rel L2) from a float64 run of the twin, but their mutual gap reached 1.24e-5 on small/mask 1x32x32,
    over REL_L2_TOL: fp32 conditioning, not a twin difference; 0.02 keeps the bound."""
    rng = np.random.default_rng(seed)
    for param in model.parameters():
        if len(param.shape) != 1:
            continue
        noise = (VECTOR_STD * rng.standard_normal(tuple(param.shape))).astype(np.float32)
        if isinstance(param, torch.Tensor):
            with torch.no_grad():
                param.add_(torch.from_numpy(noise))
        else:
            param.set_value(param.numpy() + noise)


@functools.lru_cache(maxsize=None)
def pair(preset: str, decoder: str, direction: str, interp: str = "bilinear"):
    """A (Paddle, PyTorch) pair with the same random weights, exported from one side to the other."""
    paddle.seed(7)
    torch.manual_seed(7)
    p, t = build_pair(tiny_model_cfg(preset, decoder, pos_embed_interp=interp))
    if direction == "paddle->torch":
        move_off_init(p, 7)
        load_into_torch(t, paddle_state(p))
    else:
        move_off_init(t, 7)
        load_into_paddle(p, torch_state(t))
    return p, t


@pytest.fixture(scope="module", autouse=True)
def _free_pairs():
    """The pairs are cached for this file's tests only: the test process goes on to other files."""
    yield
    pair.cache_clear()


def _check(g, what: str) -> None:
    assert g.max_abs <= MAX_ABS_TOL, f"{what}: max|diff|={g.max_abs:.3e} > {MAX_ABS_TOL}"
    assert g.rel_l2 <= REL_L2_TOL, f"{what}: relL2={g.rel_l2:.3e} > {REL_L2_TOL}"
    assert g.argmax_agree == 1.0, f"{what}: argmax agreement {100 * g.argmax_agree:.3f} %"


@pytest.mark.parametrize("direction", ["paddle->torch", "torch->paddle"])
@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("preset", tiered(PRESETS, [p for p in PRESETS if p != "base"]))  # ViT-B: the suite
def test_logits_match(preset, decoder, direction):
    p, t = pair(preset, decoder, direction)
    for b, h, w in SWEEP_SIZES:  # square, non-square, not a multiple of 16, larger than img_size with batch 2
        x = np.random.default_rng(h * w).standard_normal((b, 3, h, w)).astype(np.float32)
        _check(compare(p, t, x), f"{preset}/{decoder}/{direction} input {b}x{h}x{w}")


@pytest.mark.parametrize("interp", ["bicubic", "bicubic_antialias"])
@pytest.mark.parametrize("decoder", DECODERS)
def test_bicubic_pos_embed_resampling_matches(decoder, interp):
    p, t = pair("small", decoder, "paddle->torch", interp)
    x = np.random.default_rng(3).standard_normal((2, 3, 72, 50)).astype(np.float32)
    _check(compare(p, t, x), f"small/{decoder} {interp} 72x50")


def test_distilled_and_attention_maps_match():
    paddle.seed(1)
    cfg = tiny_model_cfg("tiny", "mask_transformer")
    cfg["backbone"]["distilled"] = True
    p, t = build_pair(cfg)
    move_off_init(p, 1)
    load_into_torch(t, paddle_state(p))
    x = np.random.default_rng(0).standard_normal((1, 3, 40, 40)).astype(np.float32)
    _check(compare(p, t, x), "distilled tiny/mask")
    with paddle.no_grad():
        _, pa = p.backbone(paddle.to_tensor(x), return_attn=True)
    with torch.no_grad():
        _, ta = t.backbone(torch.from_numpy(x), return_attn=True)
    for i, (a, b) in enumerate(zip(pa, ta)):
        g = gap(a.numpy(), b.numpy())
        assert g.max_abs <= 1e-5, f"block {i} attention max|diff|={g.max_abs:.3e}"


# Hybrid stems (SegmenterViT(stem_layers=...)): the stem alone with 4x4 patches (stride 16) and a two-stage
# ResNetV2 with 1x1 patches (stride 8), under Segmenter's two decoders and UPerNetViT (neck + aux head).
HYBRID_UPERNET = {
    "type": "UPerNetViT",
    "num_classes": 5,
    "neck": {"scales": [4, 2, 1, 0.5]},
    "decode_head": {"channels": 16, "pool_scales": [1, 2, 3, 6], "dropout": 0.1},
    "auxiliary_head": {"in_index": -1, "channels": 8, "num_convs": 1, "dropout": 0.1},
}


@pytest.mark.parametrize("model", ["linear", "mask_transformer", "upernet"])
@pytest.mark.parametrize("stem_layers,patch_size", [([], 4), ([1, 2], 1)])
def test_hybrid_stem_logits_match(stem_layers, patch_size, model):
    """Inputs 1x3x64x64 and 2x3x50x70 (not a multiple of the stride: padded to it, positions resampled)."""
    paddle.seed(5)
    torch.manual_seed(5)
    cfg = tiny_model_cfg(
        "tiny", "linear" if model == "upernet" else model, img_size=64, depth=4, pos_embed_interp="bicubic"
    )
    cfg["backbone"].update(stem_layers=stem_layers, patch_size=patch_size)
    if model == "upernet":
        cfg = {**HYBRID_UPERNET, "backbone": {**cfg["backbone"], "out_indices": [0, 1, 2, 3]}}
    p, t = build_pair(cfg)
    move_off_init(p, 5)
    load_into_torch(t, paddle_state(p))
    for b, h, w in ((1, 64, 64), (2, 50, 70)):
        x = np.random.default_rng(h * w).standard_normal((b, 3, h, w)).astype(np.float32)
        _check(compare(p, t, x), f"stem {stem_layers} patch {patch_size} {model} input {b}x{h}x{w}")

"""Attention maps: Paddle vs twin on the same weights, vs timm's own ViT (AttentionExtract), and the class masks vs
the model's output; any size (padding, resampled pos-embed) and sliding windows."""

import numpy as np
import paddle
import pytest
import timm
import torch
from timm.utils import AttentionExtract

from segmenter.engine.infer import window_starts
from segmenter.parity import build_pair, load_into_torch, paddle_state, tiny_model_cfg
from segmenter.visualize.attention import attention_maps, draw_attention_grid, window_box


@pytest.fixture(scope="module", params=["linear", "mask_transformer"])
def pair(request):
    paddle.seed(3)
    cfg = tiny_model_cfg("tiny", request.param, num_classes=5, img_size=32, depth=2)
    cfg["backbone"]["norm_eps"] = 1e-6  # timm's, for the comparison with timm's ViT
    p, t = build_pair(cfg)
    load_into_torch(t, paddle_state(p))
    p.eval()
    t.eval()
    return p, t


def image(h, w, seed=0):
    return np.random.default_rng(seed).standard_normal((3, h, w)).astype(np.float32)


@pytest.mark.parametrize(
    "h,w,pixel,slide",
    [(32, 32, None, False), (50, 70, (45, 61), False), (50, 70, (45, 61), True), (50, 70, None, True)],
)
def test_paddle_and_twin_give_the_same_maps(pair, h, w, pixel, slide):
    p, t = pair
    kw = {"crop_size": (32, 32), "stride": (16, 16)} if slide else {}
    a = attention_maps(p, image(h, w), 1, pixel, **kw)
    b = attention_maps(t, image(h, w), 1, pixel, **kw)
    assert a.box == b.box and a.query == b.query
    assert a.heads.shape == (3, a.box[2], a.box[3]), f"heads {a.heads.shape} for box {a.box}"
    d = np.abs(a.heads - b.heads).max()
    assert d <= 1e-5, f"encoder maps max|diff|={d:.2e}"
    if a.class_masks is not None:
        for what in ("class_attn", "class_masks"):
            d = np.abs(getattr(a, what) - getattr(b, what)).max()
            assert d <= 1e-5, f"{what} max|diff|={d:.2e}"


def test_encoder_maps_equal_timm_attention(pair):
    """timm's VisionTransformer with the twin's backbone weights: the softmax of its blocks, read by timm's own
    AttentionExtract, gives the same per-head maps (class-token row and a patch row) on a 32x32 input."""
    _, t = pair
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=16, depth=2, num_classes=0, global_pool=""
    )
    state = {k[len("backbone.") :]: v for k, v in t.state_dict().items() if k.startswith("backbone.")}
    vit.load_state_dict(state, strict=True)
    vit.eval()
    x = image(32, 32)
    for blk in vit.blocks:
        blk.attn.fused_attn = False  # the explicit softmax(q k^T) path, whose output AttentionExtract reads
    extract = AttentionExtract(vit, names=["blocks.1.attn.softmax"])
    with torch.no_grad():
        ref = extract(torch.from_numpy(x[None]))["blocks.1.attn.softmax"][0].numpy()  # [heads, T, T]
    for pixel, q in [(None, 0), ((20, 5), 1 + 1 * 2 + 0)]:
        got = attention_maps(t, x, 1, pixel).heads[:, ::16, ::16]  # one value per patch: [heads, 2, 2]
        want = ref[:, q, 1:].reshape(-1, 2, 2)
        d = np.abs(got - want).max()
        assert d <= 1e-6, f"query {q}: max|diff| vs timm={d:.2e}"


def test_class_masks_are_the_model_output(pair):
    p, _ = pair
    if type(p.decoder).__name__ != "MaskTransformer":
        pytest.skip("the linear decoder has no class embeddings")
    x = image(50, 70)
    m = attention_maps(p, x, -1, (10, 10))
    with paddle.no_grad():
        probs = paddle.nn.functional.softmax(p(paddle.to_tensor(x[None]))[0], axis=1)[0].numpy()
    d = np.abs(m.class_masks - probs).max()
    assert d <= 1e-5, f"class masks vs softmax of the model's logits max|diff|={d:.2e}"


@pytest.mark.parametrize("h,w", [(50, 70), (96, 96), (32, 40)])
def test_window_box_is_the_slide_window_holding_the_pixel(h, w):
    for y in range(0, h, 7):
        for x in range(0, w, 9):
            y0, x0, bh, bw = window_box(h, w, (y, x), (32, 32), (16, 16))
            assert y0 in window_starts(h, 32, 16) and x0 in window_starts(w, 32, 16), f"box {(y0, x0)} not a window"
            assert y0 <= y < y0 + bh and x0 <= x < x0 + bw, f"pixel {(y, x)} outside its window {(y0, x0, bh, bw)}"


def test_grid_png_and_errors(pair, tmp_path):
    p, _ = pair
    x = image(50, 70)
    m = attention_maps(p, x, 0, (5, 5))
    rgb = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    path = draw_attention_grid(rgb, m, str(tmp_path / "a.png"), ["a", "b", "c", "d", "e"])
    from PIL import Image

    rows = 3 if m.class_masks is not None else 1
    from segmenter.visualize.attention import ROW_INCHES

    assert Image.open(path).size[1] == int((ROW_INCHES * rows + 0.4) * 100), (
        f"grid PNG {Image.open(path).size} for {rows} rows"
    )
    with pytest.raises(ValueError, match="outside the 50x70 image"):
        attention_maps(p, x, 0, (50, 3))
    with pytest.raises(ValueError, match="layer=5 but the encoder has 2 blocks"):
        attention_maps(p, x, 5)


@pytest.mark.parametrize("with_cls_token", [True, False])
def test_upernet_attention_comes_from_its_vit(with_cls_token):
    """UPerNet's ViT returns maps (out_indices); its return_attn still gives each block's attention: Paddle equals
    the twin, and equals a ViT with the same weights that returns tokens (the flag reads the same blocks)."""
    paddle.seed(4)
    cfg = {
        "type": "UPerNetViT",
        "num_classes": 4,
        "backbone": {
            "type": "SegmenterViT",
            "img_size": 32,
            "embed_dim": 32,
            "depth": 2,
            "num_heads": 2,
            "out_indices": [0, 1],
            "with_cls_token": with_cls_token,
        },
        "decode_head": {"channels": 8, "pool_scales": [1, 2]},
    }
    p, t = build_pair(cfg)
    load_into_torch(t, paddle_state(p))
    a = attention_maps(p, image(40, 56), 1, (33, 20))
    b = attention_maps(t, image(40, 56), 1, (33, 20))
    assert a.heads.shape == (2, 40, 56) and a.query == (2, 1), f"heads {a.heads.shape}, query {a.query}"
    d = np.abs(a.heads - b.heads).max()
    assert d <= 1e-5, f"UPerNet encoder maps Paddle vs twin max|diff|={d:.2e}"
    from segmenter.models import SegmenterViT

    tokens_vit = SegmenterViT(img_size=32, embed_dim=32, depth=2, num_heads=2, with_cls_token=with_cls_token)
    tokens_vit.set_state_dict(p.backbone.state_dict())
    tokens_vit.eval()
    with paddle.no_grad():
        want = tokens_vit(paddle.to_tensor(image(40, 56)[None]), return_attn=True)[1][1][0].numpy()  # [heads, T, T]
    prefix = 1 if with_cls_token else 0
    q = prefix + 2 * 4 + 1  # patch (2, 1) of the 3x4 grid (40x56 padded to 48x64)
    got = a.heads[:, ::16, ::16]  # one value per patch: [heads, 3, 4]
    d = np.abs(got - want[:, q, prefix:].reshape(2, 3, 4)).max()
    assert d <= 1e-6, f"maps vs the token-returning ViT's attention max|diff|={d:.2e}"
    if not with_cls_token:
        with pytest.raises(ValueError, match="no class token in its blocks"):
            attention_maps(p, image(40, 56), 1, None)

"""Slide windows (placement, batched == one at a time), flip and multi-scale outputs."""

import numpy as np
import paddle
import pytest

from segmenter.engine.infer import predict_probs, slide_logits, window_starts
from segmenter.models import Segmenter, SegmenterViT


@pytest.fixture(scope="module")
def model():
    paddle.seed(0)
    vit = SegmenterViT(
        img_size=32,
        patch_size=8,
        in_channels=3,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2,
        qkv_bias=True,
        distilled=False,
        norm_eps=1e-6,
        pos_embed_interp="bilinear",
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        pretrained=None,
    )
    m = Segmenter(num_classes=3, backbone=vit, decoder={"name": "linear"})
    m.eval()
    return m


@pytest.mark.parametrize(
    "size,crop,stride,expected",
    [(64, 32, 32, [0, 32]), (70, 32, 24, [0, 24, 38]), (32, 32, 16, [0]), (20, 32, 16, [0])],
)
def test_window_starts(size, crop, stride, expected):
    got = window_starts(size, crop, stride)
    assert got == expected, f"windows for size {size} crop {crop} stride {stride}: {got} != {expected}"


@pytest.mark.parametrize("wbs", [2, 5])
def test_batched_windows_equal_one_at_a_time(model, wbs):
    x = paddle.randn([2, 3, 56, 72])
    with paddle.no_grad():
        one = slide_logits(model, x, (32, 32), (16, 20), 1).numpy()
        many = slide_logits(model, x, (32, 32), (16, 20), wbs).numpy()
    diff = np.abs(one - many).max()
    assert one.shape == (2, 3, 56, 72), f"slide logits shape {one.shape}"
    assert diff <= 1e-5, f"batched ({wbs}) vs one-at-a-time windows: max|diff|={diff:.2e}"


def test_slide_single_window_equals_whole(model):
    x = paddle.randn([1, 3, 32, 32])
    with paddle.no_grad():
        diff = np.abs(slide_logits(model, x, (32, 32), (16, 16)).numpy() - model(x)[0].numpy()).max()
    assert diff <= 1e-6, f"one window vs whole image: max|diff|={diff:.2e}"


def test_flip_and_multiscale(model):
    x = paddle.randn([1, 3, 48, 40])
    with paddle.no_grad():
        p = predict_probs(
            model, x, is_slide=True, crop_size=(32, 32), stride=(16, 16), flip_horizontal=True, scales=(0.75, 1.0, 1.25)
        )
        plain = paddle.nn.functional.softmax(model(x)[0], axis=1)
        flipped = predict_probs(model, x, flip_horizontal=True)
        by_hand = (plain + paddle.flip(paddle.nn.functional.softmax(model(paddle.flip(x, [3]))[0], axis=1), [3])) / 2
    assert p.shape == [1, 3, 48, 40], f"multi-scale + flip probs shape {p.shape}"
    s = float(np.abs(p.sum(1).numpy() - 1).max())
    assert s <= 1e-5, f"probabilities do not sum to 1: max|sum-1|={s:.2e}"
    diff = float(np.abs(flipped.numpy() - by_hand.numpy()).max())
    assert diff <= 1e-6, f"flip average vs by hand: max|diff|={diff:.2e}"


def test_crop_size_and_stride_are_paddleseg_width_height(model):
    """test_config's crop_size / stride are PaddleSeg's [width, height]: a non-square window gives PaddleSeg's own
    slide_inference logits, in the Paddle engine and in the PyTorch twin."""
    from paddleseg.core.infer import slide_inference

    x = paddle.randn([1, 3, 56, 80])
    crop, stride = [48, 32], [40, 24]  # 48 wide, 32 high
    with paddle.no_grad():
        want = slide_inference(model, x, crop, stride).numpy()
        got = predict_probs(model, x, is_slide=True, crop_size=crop, stride=stride)
        want_p = paddle.nn.functional.softmax(paddle.to_tensor(want), axis=1).numpy()
    diff = float(np.abs(got.numpy() - want_p).max())
    assert diff <= 1e-5, f"Paddle engine vs PaddleSeg slide_inference, crop [w, h] {crop}: max|diff|={diff:.2e}"
    import torch

    from segmenter.parity import build_pair, load_into_torch, paddle_state, tiny_model_cfg
    from segmenter.pytorch.inference import predict_probs as torch_probs

    p, t = build_pair(tiny_model_cfg("tiny", "linear", num_classes=3, depth=1))
    load_into_torch(t, paddle_state(p))
    with paddle.no_grad():
        want = predict_probs(p, x, is_slide=True, crop_size=crop, stride=stride).numpy()
    with torch.no_grad():
        got = torch_probs(t, torch.from_numpy(x.numpy()), is_slide=True, crop_size=crop, stride=stride).numpy()
    diff = float(np.abs(got - want).max())
    assert diff <= 1e-5, f"PyTorch twin vs Paddle, crop [w, h] {crop}: max|diff|={diff:.2e}"

"""Slice, flip and multi-scale inference against a reference built by hand: each window's box computed
independently, run, placed and averaged by count; scales interpolated, softmaxed and averaged."""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from segmenter.engine.infer import predict_probs, reverse_transform

C = 4


class PositionModel(paddle.nn.Layer):
    """Logits that depend on the pixels AND on the position inside the window (so a misplaced window shows)."""

    def __init__(self):
        super().__init__()
        self.mix = paddle.to_tensor(np.random.RandomState(0).randn(C, 3).astype("float32"))

    def forward(self, x):
        _, _, h, w = x.shape
        i = paddle.arange(h, dtype="float32").reshape([1, 1, h, 1])
        j = paddle.arange(w, dtype="float32").reshape([1, 1, 1, w])
        c = paddle.arange(C, dtype="float32").reshape([1, C, 1, 1])
        pos = paddle.sin(0.13 * i * (c + 1)) + paddle.cos(0.07 * j * (c + 2))  # [1, C, h, w]
        return [paddle.einsum("cd,bdhw->bchw", self.mix, x) + pos]


def starts_by_hand(size: int, crop: int, stride: int) -> list[int]:
    """Every stride-th origin that leaves a full window, then one flush with the far edge."""
    if size <= crop:
        return [0]
    s = list(range(0, size - crop, stride))
    return s + [size - crop] if s[-1] != size - crop else s


def slide_by_hand(model, x: np.ndarray, crop, stride) -> np.ndarray:
    _, _, h, w = x.shape
    total, count = np.zeros((1, C, h, w)), np.zeros((h, w))
    for y in starts_by_hand(h, crop[0], stride[0]):
        for xx in starts_by_hand(w, crop[1], stride[1]):
            win = x[:, :, y : y + crop[0], xx : xx + crop[1]]
            total[:, :, y : y + crop[0], xx : xx + crop[1]] += model(paddle.to_tensor(win))[0].numpy()
            count[y : y + crop[0], xx : xx + crop[1]] += 1
    assert count.min() >= 1
    return total / count


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def reference(model, x: np.ndarray, crop, stride, flip: bool, scales) -> np.ndarray:
    h, w = x.shape[2:]
    out = []
    for s in scales:
        size = [int(h * s + 0.5), int(w * s + 0.5)]
        xs = F.interpolate(paddle.to_tensor(x), size=size, mode="bilinear").numpy() if s != 1.0 else x
        for f in [False, True] if flip else [False]:
            logits = slide_by_hand(model, xs[..., ::-1].copy() if f else xs, crop, stride)
            logits = logits[..., ::-1] if f else logits
            logits = F.interpolate(paddle.to_tensor(logits.astype("float32")), size=[h, w], mode="bilinear").numpy()
            out.append(softmax(logits))
    return np.mean(out, axis=0)


@pytest.mark.parametrize("flip,scales", [(False, (1.0,)), (True, (1.0,)), (True, (0.75, 1.0, 1.5))])
def test_slide_flip_scales_match_hand_reference(flip, scales):
    model = PositionModel()
    x = np.random.RandomState(1).randn(1, 3, 70, 101).astype("float32")  # non-square: 3 x 4 windows at scale 1
    crop, stride = (32, 40), (20, 24)
    assert len(starts_by_hand(70, 32, 20)) == 3 and len(starts_by_hand(101, 40, 24)) == 4
    # predict_probs takes PaddleSeg's [width, height]; the hand reference (h, w)
    got = predict_probs(model, paddle.to_tensor(x), True, crop[::-1], stride[::-1], 1, flip, scales).numpy()
    want = reference(model, x, crop, stride, flip, scales)
    d = np.abs(got - want).max()
    changed = (got.argmax(1) != want.argmax(1)).mean()
    assert d <= 1e-5, f"flip={flip} scales={scales}: max|diff|={d:.2e}, {changed:.1%} of arg-max pixels differ"


def test_window_batch_size_does_not_change_slide():
    model, x = PositionModel(), paddle.to_tensor(np.random.RandomState(2).randn(1, 3, 70, 101).astype("float32"))
    a = predict_probs(model, x, True, (32, 40), (20, 24), 1).numpy()
    b = predict_probs(model, x, True, (32, 40), (20, 24), 5).numpy()
    assert np.abs(a - b).max() <= 1e-6, f"window_batch_size 5 vs 1: max|diff|={np.abs(a - b).max():.2e}"


def test_reverse_transform_undoes_resize_and_padding_like_paddleseg():
    """Against paddleseg.core.infer.reverse_transform (bilinear) on a non-square pipeline record."""
    from paddleseg.core.infer import reverse_transform as ps_reverse

    x = paddle.to_tensor(np.random.RandomState(3).randn(1, C, 96, 128).astype("float32"))
    info = [("resize", (375, 500)), ("padding", (90, 120))]
    got, want = reverse_transform(x, info).numpy(), ps_reverse(x, info, mode="bilinear").numpy()
    assert got.shape == (1, C, 375, 500), f"shape {got.shape}"
    assert np.abs(got - want).max() <= 1e-6, f"max|diff|={np.abs(got - want).max():.2e}"

"""Whole-image, sliding-window ("slice"), flip and multi-scale inference.

On the CPU the full-resolution work around the model runs in numpy on the tensors' memory: a window's logits added
into the image's sums (paddle's strided += took 231 ms per 768x768 window of 19 classes, numpy 12-20 ms) and the
softmax over the classes (paddle's over axis 1 of [1, 19, 1024, 2048]: 0.54 s, numpy 0.15 s); together 2.9 s of a
Cityscapes image's 16.9 s (docs/benchmarks.md).
"""

import numpy as np
import paddle
import paddle.nn.functional as F

from segmenter.engine.compiled import as_array, as_tensor
from segmenter.windows import window_starts


def slide_logits(
    model: paddle.nn.Layer, x: paddle.Tensor, crop: tuple[int, int], stride: tuple[int, int], window_batch_size: int = 1
) -> paddle.Tensor:
    """Logits [B, C, H, W] averaged over overlapping windows (run window_batch_size at a time); crop and stride
    are (h, w)."""
    _, _, h, w = x.shape
    boxes = [(y, xx) for y in window_starts(h, crop[0], stride[0]) for xx in window_starts(w, crop[1], stride[1])]
    on_cpu = x.place.is_cpu_place()
    total = None
    count = np.zeros([1, 1, h, w], np.float32) if on_cpu else paddle.zeros([1, 1, h, w], x.dtype)
    for i in range(0, len(boxes), window_batch_size):
        chunk = boxes[i : i + window_batch_size]
        crops = [x[:, :, y : y + crop[0], xx : xx + crop[1]] for y, xx in chunk]
        out = model(paddle.concat(crops, axis=0))[0]  # [n * B, C, ch, cw]
        outs = paddle.split(out, len(chunk), axis=0)
        if total is None:
            shape = [x.shape[0], out.shape[1], h, w]
            total = np.zeros(shape, np.float32) if on_cpu else paddle.zeros(shape, x.dtype)
        for (y, xx), o in zip(chunk, outs):
            ch, cw = o.shape[2], o.shape[3]
            total[:, :, y : y + ch, xx : xx + cw] += as_array(o) if on_cpu else o
            count[:, :, y : y + ch, xx : xx + cw] += 1
    if on_cpu:
        total /= count
        return as_tensor(total)
    return total / count


def softmax_classes(logits: paddle.Tensor) -> paddle.Tensor:
    """Softmax over axis 1 of [B, C, H, W] logits (in numpy on the CPU, see the module's doc)."""
    if not logits.place.is_cpu_place():
        return F.softmax(logits, axis=1)
    a = as_array(logits)
    e = a - a.max(axis=1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return as_tensor(e)


def predict_probs(
    model: paddle.nn.Layer,
    x: paddle.Tensor,
    is_slide: bool = False,
    crop_size=None,
    stride=None,
    window_batch_size: int = 1,
    flip_horizontal: bool = False,
    scales=(1.0,),
    with_plain: bool = False,
):
    """Softmax probabilities [B, C, H, W], averaged over scales and (optionally) horizontal flips. With_plain, also
    the probabilities of the unflipped scale-1.0 pass alone (None if 1.0 is not among scales): (averaged, plain)."""
    h, w = x.shape[2], x.shape[3]
    acc = plain = None
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, size=[int(h * s + 0.5), int(w * s + 0.5)], mode="bilinear")
        inputs = [xs, paddle.flip(xs, axis=[3])] if flip_horizontal else [xs]
        for k, xi in enumerate(inputs):
            if is_slide:
                # crop_size and stride are PaddleSeg's [width, height]; slide_logits takes (h, w)
                logits = slide_logits(
                    model, xi, (crop_size[1], crop_size[0]), (stride[1], stride[0]), window_batch_size
                )
            else:
                logits = model(xi)[0]
            if k == 1:
                logits = paddle.flip(logits, axis=[3])
            if logits.shape[2:] != [h, w]:
                logits = F.interpolate(logits, size=[h, w], mode="bilinear")
            p = softmax_classes(logits)
            if s == 1.0 and k == 0:
                plain = p
            acc = p if acc is None else acc + p
    acc = acc / (len(scales) * (2 if flip_horizontal else 1))
    return (acc, plain) if with_plain else acc


def reverse_transform(x: paddle.Tensor, trans_info: list) -> paddle.Tensor:
    """Undo the resizes and paddings a PaddleSeg transform pipeline recorded in trans_info (last op first) on
    probabilities or logits x [B, C, h, w], as paddleseg.core.infer.reverse_transform does on logits: each
    ('resize', (H, W)) is undone by bilinear interpolation back to (H, W), each ('padding', (H, W)) by cropping the
    top-left (H, W). The result is at the size the image had when it was read."""
    for item in reversed(trans_info or []):
        op, (h, w) = item[0], item[1]
        op = op[0] if isinstance(op, (list, tuple)) else op  # a batched trans_info holds lists
        h, w = int(h), int(w)
        if op == "resize":
            x = F.interpolate(x, size=[h, w], mode="bilinear")
        elif op == "padding":
            x = x[:, :, :h, :w]
        else:
            raise ValueError(f"trans_info holds {item!r}; only 'resize' and 'padding' can be undone.")
    return x

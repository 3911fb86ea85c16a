"""Panels of validation images from the Paddle model: logged to VisualDL during training, or the worst and best
images by IoU saved by tools/val.py --save_panels."""

import os
from typing import Optional, Sequence

import numpy as np
import paddle
from PIL import Image

from segmenter.engine.evaluate import sample_label
from segmenter.engine.infer import predict_probs, reverse_transform
from segmenter.engine.metrics import confusion_matrix
from segmenter.visualize.palette import class_names, palette
from segmenter.visualize.panels import panel


def display_image(dataset, sample: dict) -> np.ndarray:
    """The RGB uint8 picture of a normalised sample [3, H, W]: undo the dataset's mean/std where it says them
    (SegmenterShapes' `mean`/`std`, PaddleSeg's Normalize transform), else stretch each channel to 0-255."""
    x = np.asarray(sample["img"], np.float32)
    mean, std = getattr(dataset, "mean", None), getattr(dataset, "std", None)
    for t in getattr(getattr(dataset, "transforms", None), "transforms", []) or []:
        if type(t).__name__ == "Normalize":
            mean, std = np.asarray(t.mean, np.float32)[:, None, None], np.asarray(t.std, np.float32)[:, None, None]
            if mean.max() > 1:  # PaddleSeg normalises 0-255 pixels when its mean is in 0-255 units
                mean, std = mean / 255.0, std / 255.0
    if mean is not None:
        x = x * std + mean
    else:
        lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
        x = (x - lo) / np.maximum(hi - lo, 1e-6)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)  # [3, H, W] -> [H, W, 3]


def sample_panel(
    model, dataset, idx: int, names: Sequence[str], pal: np.ndarray, infer_kwargs: dict, title: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(panel, prediction, label) of dataset[idx] predicted as evaluate() does: the probabilities are brought back
    to the label's (original) size through the sample's trans_info, and the picture is resized to it."""
    s = dataset[idx]
    # a few images: not worth compiling (nor, then, bf16: the predictor is where bf16 runs)
    kw = {k: v for k, v in infer_kwargs.items() if k not in ("fast_path", "precision")}
    with paddle.no_grad():
        probs = predict_probs(model, paddle.to_tensor(np.asarray(s["img"], np.float32)[None]), **kw)
    pred = reverse_transform(probs, s.get("trans_info")).argmax(1)[0].numpy()  # [1, C, H, W] -> [H, W]
    label = sample_label(s)
    image = display_image(dataset, s)
    if image.shape[:2] != pred.shape:  # the val transforms resized or padded the network input
        image = np.asarray(Image.fromarray(image).resize((pred.shape[1], pred.shape[0]), Image.BILINEAR))
    return panel(image, label, pred, names, pal, title), pred, label


def names_of(dataset, num_classes: int, names: Optional[list] = None) -> list[str]:
    """Class names: names (the config's), else the dataset object's CLASS_NAMES or its type's standard names."""
    return class_names(num_classes, type(dataset).__name__, names or getattr(dataset, "CLASS_NAMES", None))


def log_panels(
    writer,
    model,
    dataset,
    num_classes: int,
    step: int,
    infer_kwargs: Optional[dict] = None,
    count: int = 4,
    names: Optional[list] = None,
) -> list[str]:
    """Log the first `count` validation images as image | ground truth | prediction under the VisualDL Images tags
    `Evaluate/panel_<i>` at `step`; the same images every evaluation, so the slider shows training progress."""
    was_training = model.training
    model.eval()
    names, pal = names_of(dataset, num_classes, names), palette(num_classes)
    tags = []
    for i in range(min(count, len(dataset))):
        img, _, _ = sample_panel(model, dataset, i, names, pal, infer_kwargs or {}, title=f"#{i}")
        tags.append(f"Evaluate/panel_{i}")
        writer.add_image(tag=tags[-1], img=img, step=step)
    if was_training:
        model.train()
    return tags


def image_iou(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255) -> float:
    """Mean IoU of one image over the classes in its truth or its prediction."""
    cm = confusion_matrix(pred, label, num_classes, ignore_index).astype(np.float64)
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    return float((inter[union > 0] / union[union > 0]).mean()) if (union > 0).any() else 1.0


def save_extreme_panels(
    model, dataset, num_classes: int, n: int, save_dir: str, infer_kwargs: dict, names: Optional[list] = None
) -> list[str]:
    """Predict every image, then write the n worst and n best by image mIoU as
    save_dir/{worst,best}_<rank>_img<idx>_iou<value>.png; returns the paths (worst first)."""
    names, pal = names_of(dataset, num_classes, names), palette(num_classes)
    scores = []
    model.eval()
    for i in range(len(dataset)):
        _, pred, label = sample_panel(model, dataset, i, names, pal, infer_kwargs)
        scores.append((image_iou(pred, label, num_classes), i))
    scores.sort()
    os.makedirs(save_dir, exist_ok=True)
    paths = []
    picks = [("worst", s) for s in scores[:n]] + [("best", s) for s in scores[::-1][:n]]
    for r, (kind, (iou, i)) in enumerate(picks):
        img, _, _ = sample_panel(model, dataset, i, names, pal, infer_kwargs, title=f"#{i} mIoU {iou:.3f}")
        paths.append(os.path.join(save_dir, f"{kind}_{r % n}_img{i}_iou{iou:.3f}.png"))
        Image.fromarray(img).save(paths[-1])
    return paths

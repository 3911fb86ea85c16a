"""Class colours, class names and a colour legend that names them."""

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segmenter.class_names import BUILT_IN

IGNORE_COLOR = (255, 255, 255)  # ignored pixels of a ground truth (label 255) are drawn white


def palette(n: int) -> np.ndarray:
    """n distinct RGB colours [n, 3] uint8 (the usual bit-spreading VOC palette)."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, j = i, 0
        while c:
            for k in range(3):
                pal[i, k] |= ((c >> k) & 1) << (7 - j)
            c >>= 3
            j += 1
    return pal


def class_names(
    num_classes: int, dataset_type: Optional[str] = None, names: Optional[Sequence[str]] = None
) -> list[str]:
    """Names of the classes: `names` if given, the standard names of a built-in dataset type, else 'class i'."""
    if names is not None and len(names) != num_classes:
        raise ValueError(f"class_names: {len(names)} names for {num_classes} classes; give one name per class.")
    if names is None and dataset_type == "SegmenterShapes":
        from segmenter.datasets.shapes import SHAPES

        names = SHAPES
    elif names is None and len(BUILT_IN.get(dataset_type, ())) == num_classes:
        names = BUILT_IN[dataset_type]
    return list(names) if names is not None else [f"class {i}" for i in range(num_classes)]


def colorize(label: np.ndarray, pal: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Class map [H, W] -> RGB [H, W, 3] uint8; ignore_index (and anything out of range) in IGNORE_COLOR."""
    label = np.asarray(label).astype(np.int64)
    valid = (label >= 0) & (label < len(pal)) & (label != ignore_index)
    out = np.empty(label.shape + (3,), np.uint8)
    out[...] = IGNORE_COLOR
    out[valid] = pal[label[valid]]
    return out


def overlay(image: np.ndarray, pred: np.ndarray, pal: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the prediction colours over an RGB uint8 image [H, W, 3]."""
    return ((1 - alpha) * image + alpha * colorize(pred, pal)).astype(np.uint8)


def font(size: int = 12) -> ImageFont.ImageFont:
    """PIL's bundled scalable font (no system font needed)."""
    return ImageFont.load_default(size=size)


def legend(
    names: Sequence[str],
    pal: np.ndarray,
    width: int,
    classes: Optional[Sequence[int]] = None,
    row_height: int = 16,
    extra: Sequence[tuple] = (),
) -> np.ndarray:
    """A white strip [h, width, 3] uint8 of colour swatches with class names, wrapped to `width`.

    classes: which classes to list (default: all); a legend of 150 ADE20K classes is better cut to those present.
    extra: further (text, RGB) items after the classes, e.g. what white (ignored pixels) means.
    """
    classes = list(range(len(names))) if classes is None else list(classes)
    entries = [(names[c], tuple(int(v) for v in pal[c])) for c in classes] + [(t, tuple(rgb)) for t, rgb in extra]
    f = font(row_height - 4)
    items, x, y = [], 4, 2  # lay the items out first to know the strip's height
    for text, rgb in entries:
        w = row_height + 6 + int(f.getlength(text)) + 10
        if x + w > width and x > 4:
            x, y = 4, y + row_height
        items.append((text, rgb, x, y))
        x += w
    strip = Image.new("RGB", (width, y + row_height + 2), (255, 255, 255))
    d = ImageDraw.Draw(strip)
    for text, rgb, x, y in items:
        d.rectangle([x, y + 1, x + row_height - 3, y + row_height - 2], fill=rgb, outline=(0, 0, 0))
        d.text((x + row_height + 2, y + 1), text, fill=(0, 0, 0), font=f)
    return np.asarray(strip)

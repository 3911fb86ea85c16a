"""image | ground truth | prediction panels with titles and a colour legend (numpy in, RGB uint8 out)."""

import math
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from segmenter.visualize.palette import IGNORE_COLOR, colorize, font, legend

GAP = 4  # white pixels between tiles
TITLE_H = 22
MIN_TILE = 320  # a small image is enlarged (whole pixels, nearest) until its longer side reaches this many pixels
ROW_H = 20  # legend row height


def tile_scale(h: int, w: int) -> int:
    """The whole-number enlargement of an h x w image in a panel."""
    return max(1, math.ceil(MIN_TILE / max(h, w)))


def panel(
    image: np.ndarray,
    label: Optional[np.ndarray],
    pred: np.ndarray,
    names: Sequence[str],
    pal: np.ndarray,
    title: str = "",
    ignore_index: int = 255,
) -> np.ndarray:
    """RGB uint8 [H, W, 3] image, label [H, W] (or None) and prediction [H, W] -> one RGB uint8 panel.

    Tiles: image, ground truth (ignored pixels white), prediction, each enlarged tile_scale(H, W) times (nearest);
    under them a legend of the classes present in the truth or the prediction, and of white when the truth has
    ignored pixels. Size: (TITLE_H + sH + legend) x (3sW + 2 GAP) with a label, 2sW + GAP without.
    """
    h, w = pred.shape
    if image.shape[:2] != (h, w) or (label is not None and label.shape != (h, w)):
        raise ValueError(
            f"panel: image {image.shape[:2]}, label {None if label is None else label.shape} and "
            f"prediction {pred.shape} must have one size; resize them to the label's first."
        )
    tiles = [("image", image)]
    if label is not None:
        tiles.append(("ground truth", colorize(label, pal, ignore_index)))
    tiles.append(("prediction", colorize(pred, pal)))
    s = tile_scale(h, w)
    tiles = [(name, np.repeat(np.repeat(np.asarray(t), s, 0), s, 1)) for name, t in tiles]
    width = len(tiles) * s * w + (len(tiles) - 1) * GAP
    present = np.unique(pred) if label is None else np.union1d(np.unique(pred), np.unique(label))
    present = [int(c) for c in present if 0 <= c < len(names)]
    ignored = label is not None and bool((np.asarray(label) == ignore_index).any())
    extra = [(f"ignored ({ignore_index}, not scored)", IGNORE_COLOR)] if ignored else []
    strip = legend(names, pal, width, present, row_height=ROW_H, extra=extra)
    canvas = Image.new("RGB", (width, TITLE_H + s * h + strip.shape[0]), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    f = font(15)
    for k, (name, tile) in enumerate(tiles):
        x = k * (s * w + GAP)
        canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (x, TITLE_H))
        d.text((x + 2, 3), f"{name} {title}" if (k == 0 and title) else name, fill=(0, 0, 0), font=f)
    canvas.paste(Image.fromarray(strip), (0, TITLE_H + s * h))
    return np.asarray(canvas)


def panel_size(h: int, w: int, with_label: bool = True) -> tuple[int, int]:
    """(height without the legend, width) of a panel for an h x w image."""
    n, s = (3 if with_label else 2), tile_scale(h, w)
    return TITLE_H + s * h, n * s * w + (n - 1) * GAP

"""Procedural quickstart dataset: the class of a region is its shape (disc, square, triangle), never its colour."""

import numpy as np
import paddle
from paddleseg.cvlibs import manager

SHAPES = ("background", "disc", "square", "triangle")


def draw_sample(
    rng: np.random.Generator, size: int, max_shapes: int, radius: tuple[float, float] = (6.0, 14.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image [H, W, 3] uint8 and its label [H, W] int64; colours are random so only shape tells class.

    The background is a dark grey (0-60) and every shape a random bright colour (each channel 100-255), so a shape
    always stands out but its colour says nothing about its class. (With a random background colour as well, a
    ViT's linear patch embedding has to untangle colour from shape first: the quickstart model then stays below
    0.40 slice + flip mIoU on 2 CPU cores in 10 minutes, against 0.81 with this contrast rule; see docs/training.md
    "Quickstart figures".)
    """
    img = np.full((size, size, 3), rng.uniform(0, 60), dtype=np.float32)
    img += rng.normal(0, 12, size=(size, size, 3)).astype(np.float32)
    label = np.zeros((size, size), dtype=np.int64)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(rng.integers(1, max_shapes + 1)):
        cls = int(rng.integers(1, len(SHAPES)))
        r = rng.uniform(*radius)  # absolute pixels: larger images hold more shapes of the same scale
        cy, cx = rng.uniform(r, size - r, size=2)
        if cls == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        elif cls == 2:
            mask = (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
        else:  # upward triangle: apex at top, base at bottom
            top, bottom = cy - r, cy + r
            half = (yy - top) / (2 * r) * r * 1.1
            mask = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)
        img[mask] = rng.uniform(100, 255, size=3) + rng.normal(0, 12, size=(int(mask.sum()), 3))
        label[mask] = cls
    return np.clip(img, 0, 255).astype(np.uint8), label


@manager.DATASETS.add_component
class SegmenterShapes(paddle.io.Dataset):
    """Synthetic segmentation of discs, squares and triangles with random colours, deterministic by seed.

    Args:
        num_samples (int): Number of images.
        img_size (int, optional): Side of the square images. Default: 64.
        max_shapes (int, optional): At most this many shapes per image. Default: 4.
        radius (list, optional): Shape radius range [min, max] in pixels. Default: [6, 14].
        seed (int, optional): Sample i is drawn from seed and i only. Default: 0.
        mode (str, optional): 'train' adds random horizontal flips; 'val' does not. Default: 'train'.
        mean (list, optional): Normalisation mean in [0, 1] units. Default: [0.5, 0.5, 0.5].
        std (list, optional): Normalisation std in [0, 1] units. Default: [0.5, 0.5, 0.5].
    """

    NUM_CLASSES = len(SHAPES)
    IMG_CHANNELS = 3
    IGNORE_INDEX = 255

    def __init__(
        self,
        num_samples: int,
        img_size: int = 64,
        max_shapes: int = 4,
        seed: int = 0,
        radius: list = (6.0, 14.0),
        mode: str = "train",
        mean: list = (0.5, 0.5, 0.5),
        std: list = (0.5, 0.5, 0.5),
    ):
        if num_samples <= 0:
            raise ValueError(f"SegmenterShapes: num_samples={num_samples} must be > 0; set it in the YAML dataset.")
        if mode not in ("train", "val"):
            raise ValueError(f"SegmenterShapes: mode={mode!r} must be 'train' or 'val'.")
        self.num_samples, self.img_size, self.max_shapes = num_samples, img_size, max_shapes
        if len(radius) != 2 or not 0 < radius[0] <= radius[1] or 2 * radius[0] > img_size:
            raise ValueError(
                f"SegmenterShapes: radius={list(radius)} must be [min, max] with 0 < min <= max and "
                f"2 * min <= img_size ({img_size})."
            )
        self.seed, self.mode, self.radius = seed, mode, (float(radius[0]), float(radius[1]))
        self.num_classes = self.NUM_CLASSES
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]

    def __len__(self) -> int:
        return self.num_samples

    def sample(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw uint8 image [H, W, 3] and label [H, W] of sample idx."""
        return draw_sample(np.random.default_rng([self.seed, idx]), self.img_size, self.max_shapes, self.radius)

    def __getitem__(self, idx: int) -> dict:
        img, label = self.sample(idx)
        x = (img.transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std  # [H, W, 3] -> [3, H, W]
        if self.mode == "train" and np.random.default_rng([self.seed, idx, 1]).random() < 0.5:
            x, label = x[:, :, ::-1], label[:, ::-1]
        return {"img": np.ascontiguousarray(x), "label": np.ascontiguousarray(label)}

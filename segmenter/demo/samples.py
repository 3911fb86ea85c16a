"""The demo's sample images, drawn procedurally at start-up (deterministic, nothing downloaded or committed)."""

from typing import Callable, Dict

import numpy as np

from segmenter.datasets.shapes import draw_sample


def shapes(size: int) -> Callable[[], np.ndarray]:
    """Discs, squares and triangles on dark grey: what the quickstart model learns (its val images are 96 px)."""
    return lambda: draw_sample(np.random.default_rng(size), size, max(4, size // 24), (size / 16, size / 7))[0]


def landscape(h: int = 384, w: int = 640) -> np.ndarray:
    """Sky, sun, two mountain ridges, a lake and grass: a picture with large regions for scene-parsing models."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (yy / h)[..., None]
    img = (1 - t) * np.array([70, 130, 210], np.float32) + t * np.array([190, 215, 240], np.float32)  # sky gradient
    sun = (yy - 0.18 * h) ** 2 + (xx - 0.78 * w) ** 2 < (0.07 * h) ** 2
    img[sun] = (255, 230, 120)
    far = 0.42 * h + 0.06 * h * np.sin(xx / w * 7.0) + 0.03 * h * np.sin(xx / w * 23.0 + 1.0)
    near = 0.55 * h + 0.05 * h * np.sin(xx / w * 4.0 + 2.0) + 0.02 * h * np.sin(xx / w * 31.0)
    img[yy > far] = (110, 110, 130)
    img[yy > near] = (80, 95, 70)
    lake = (yy > 0.68 * h) & (((xx - 0.3 * w) / (0.28 * w)) ** 2 + ((yy - 0.8 * h) / (0.1 * h)) ** 2 < 1)
    img[(yy > 0.7 * h) & ~lake] = (70, 140, 60)  # grass
    img[lake] = (50, 90, 150)
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


SAMPLES: Dict[str, Callable[[], np.ndarray]] = {
    "shapes_96": shapes(96),
    "shapes_512": shapes(512),
    "landscape_640x384": landscape,
}

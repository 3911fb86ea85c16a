"""Small stand-ins of the real dataset releases' folder layouts (real folder and file names, odd image sizes).

Every image is structured and non-square: blocks of classes, the class written into the red channel as
R = 40 * class + 20 (so `oracle_class` can read it back), so an H/W swap or a missing normalisation shows.
Each layout function writes under root and returns the dataset_root a config should point at.
"""

import os

import numpy as np
from PIL import Image

SIZES = [(375, 500), (512, 683), (333, 480)]  # (H, W): odd sizes as in ADE20K / VOC
N_CLASSES_DRAWN = 6  # classes 0..5 appear in the stand-ins


def class_map(h: int, w: int, seed: int) -> np.ndarray:
    """Label [H, W] of rectangular blocks (rows of 48-96 px, columns of 64-128 px), classes 0..5."""
    rng = np.random.default_rng(seed)
    rows = np.cumsum(rng.integers(48, 97, size=h // 48 + 2))
    cols = np.cumsum(rng.integers(64, 129, size=w // 64 + 2))
    ry, cx = np.searchsorted(rows, np.arange(h), side="right"), np.searchsorted(cols, np.arange(w), side="right")
    return ((ry[:, None] * 7 + cx[None, :] * 3 + seed) % N_CLASSES_DRAWN).astype(np.uint8)


def image_of(label: np.ndarray, seed: int) -> np.ndarray:
    """RGB uint8 [H, W, 3]: red encodes the class, green a horizontal ramp, blue a vertical one."""
    h, w = label.shape
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 40 * label + 20
    img[..., 1] = (np.arange(w)[None, :] * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 2] = (np.arange(h)[:, None] * 255 // max(h - 1, 1)).astype(np.uint8)
    return img


def oracle_class(red_0_255: np.ndarray) -> np.ndarray:
    """The class a red value encodes."""
    return np.clip(np.rint((red_0_255 - 20) / 40), 0, N_CLASSES_DRAWN - 1).astype(np.int64)


def _pair(img_path: str, lab_path: str, h: int, w: int, seed: int, code=lambda c: c, palette: bool = False):
    """Write one image and its label (label values = code(class))."""
    lab = class_map(h, w, seed)
    for p in (img_path, lab_path):
        os.makedirs(os.path.dirname(p), exist_ok=True)
    img = Image.fromarray(image_of(lab, seed))
    img.save(img_path, quality=95) if img_path.endswith(".jpg") else img.save(img_path)
    out = Image.fromarray(code(lab).astype(np.uint8))
    if palette:  # VOC / Context labels are palette PNGs whose indices are the classes
        out = out.convert("P")
        out.putpalette(sum(([i, i, i] for i in range(256)), []))
    out.save(lab_path)
    return lab


def ade20k(root: str, n_train: int = 2, n_val: int = 2) -> str:
    """ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}; label 0 = 'other'
    (ignored), classes 1..150 (stored class + 1)."""
    base = os.path.join(root, "ADEChallengeData2016")
    for split, tag, n in (("training", "train", n_train), ("validation", "val", n_val)):
        for i in range(n):
            h, w = SIZES[i % len(SIZES)]
            name = f"ADE_{tag}_{i + 1:08d}"
            _pair(
                f"{base}/images/{split}/{name}.jpg",
                f"{base}/annotations/{split}/{name}.png",
                h,
                w,
                i,
                code=lambda c: c + 1,
            )
    return base


def cityscapes(root: str, scale: int = 8, n_train: int = 2, n_val: int = 2) -> str:
    """cityscapes/{leftImg8bit,gtFine}/{train,val}/<city>/<city>_000000_0000NN_{leftImg8bit,gtFine_labelTrainIds}
    .png at 2048x1024 / scale."""
    base = os.path.join(root, "cityscapes")
    for split, city, n in (("train", "aachen", n_train), ("val", "frankfurt", n_val)):
        for i in range(n):
            stem = f"{city}_000000_{i:06d}"
            _pair(
                f"{base}/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
                f"{base}/gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png",
                1024 // scale,
                2048 // scale,
                i,
            )
    return base


def pascal_context(root: str, n_train: int = 2, n_val: int = 2) -> str:
    """VOC2010/{JPEGImages,Context}/<id>.{jpg,png} + ImageSets/Segmentation/{train,val}_context.txt."""
    base = os.path.join(root, "VOC2010")
    os.makedirs(f"{base}/ImageSets/Segmentation", exist_ok=True)
    for split, n, off in (("train", n_train, 0), ("val", n_val, 100)):
        ids = [f"2008_{off + i:06d}" for i in range(n)]
        for i, name in enumerate(ids):
            h, w = SIZES[i % len(SIZES)]
            _pair(f"{base}/JPEGImages/{name}.jpg", f"{base}/Context/{name}.png", h, w, off + i, palette=True)
        with open(f"{base}/ImageSets/Segmentation/{split}_context.txt", "w") as f:
            f.write("\n".join(ids) + "\n")
    return base


def pascal_voc(root: str, n_train: int = 2, n_val: int = 2) -> str:
    """VOCdevkit/VOC2012/{JPEGImages,SegmentationClass}/<id>.{jpg,png} + ImageSets/Segmentation/{train,val}.txt."""
    base = os.path.join(root, "VOCdevkit")
    voc = os.path.join(base, "VOC2012")
    os.makedirs(f"{voc}/ImageSets/Segmentation", exist_ok=True)
    for split, n, off in (("train", n_train, 0), ("val", n_val, 100)):
        ids = [f"2007_{off + i:06d}" for i in range(n)]
        for i, name in enumerate(ids):
            h, w = SIZES[i % len(SIZES)]
            _pair(f"{voc}/JPEGImages/{name}.jpg", f"{voc}/SegmentationClass/{name}.png", h, w, off + i, palette=True)
        with open(f"{voc}/ImageSets/Segmentation/{split}.txt", "w") as f:
            f.write("\n".join(ids) + "\n")
    return base


def file_list(root: str, n_train: int = 2, n_val: int = 2) -> str:
    """my_data/{images,labels}/... + train.txt / val.txt with 'image label' lines (PaddleSeg's Dataset and our
    SegmenterFileList)."""
    base = os.path.join(root, "my_data")
    for split, n, off in (("train", n_train, 0), ("val", n_val, 100)):
        lines = []
        for i in range(n):
            h, w = SIZES[i % len(SIZES)]
            img, lab = f"images/{split}_{i}.jpg", f"labels/{split}_{i}.png"
            _pair(f"{base}/{img}", f"{base}/{lab}", h, w, off + i)
            lines.append(f"{img} {lab}")
        with open(f"{base}/{split}.txt", "w") as f:
            f.write("\n".join(lines) + "\n")
    return base

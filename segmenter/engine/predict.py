"""Prediction on image files: pseudo-colour masks and overlays written as PNG."""
import os

import numpy as np
import paddle
from PIL import Image
from tqdm import tqdm

from segmenter.engine.infer import predict_probs
from segmenter.engine.run import load_model, test_kwargs

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


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


def list_images(path: str) -> list[str]:
    """The image files at path (a file or a folder); an error names the path if there are none."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--image_path {path} does not exist; pass an image file or a folder of images.")
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise FileNotFoundError(f"--image_path {path} holds no image ({', '.join(IMAGE_EXTS)}).")
    return files


def run_predict(cfg, model_path: str, image_path: str, save_dir: str, **overrides) -> list[str]:
    """Write save_dir/pseudo_color/<name>.png and save_dir/added/<name>.png; returns the mask paths."""
    model = load_model(cfg, model_path)
    kw = test_kwargs(cfg, overrides)
    data = cfg.val_dataset_cfg or {}  # normalise as the model saw its validation images
    mean = np.asarray(data.get("mean", (0.5, 0.5, 0.5)), np.float32)[:, None, None]
    std = np.asarray(data.get("std", (0.5, 0.5, 0.5)), np.float32)[:, None, None]
    pal = palette(model.num_classes)
    out = []
    for d in ("pseudo_color", "added"):
        os.makedirs(os.path.join(save_dir, d), exist_ok=True)
    with paddle.no_grad():
        for f in tqdm(list_images(image_path), desc="predict"):
            try:
                img = np.asarray(Image.open(f).convert("RGB"))
            except Exception as e:
                raise ValueError(f"predict: cannot decode image {f}: {e}") from e
            x = (img.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std  # [H, W, 3] -> [3, H, W]
            probs = predict_probs(model, paddle.to_tensor(x[None]), **kw)
            pred = probs.argmax(1)[0].numpy().astype(np.uint8)
            name = os.path.splitext(os.path.basename(f))[0] + ".png"
            color = pal[pred]
            Image.fromarray(color).save(os.path.join(save_dir, "pseudo_color", name))
            Image.fromarray((0.5 * img + 0.5 * color).astype(np.uint8)).save(os.path.join(save_dir, "added", name))
            out.append(os.path.join(save_dir, "pseudo_color", name))
    return out

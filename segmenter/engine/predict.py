"""Prediction on image files: pseudo-colour masks and overlays written as PNG."""
import os

import cv2
import numpy as np
import paddle
from paddleseg.transforms import Compose
from PIL import Image
from tqdm import tqdm

from segmenter.engine.builder import Builder
from segmenter.engine.compiled import inference_model
from segmenter.engine.infer import predict_probs, reverse_transform
from segmenter.engine.run import load_model, test_kwargs
from segmenter.visualize.palette import palette

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(path: str) -> list[str]:
    """The image files at path (a file, or a folder searched recursively); an error names the path if none."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--image_path {path} does not exist; pass an image file or a folder of images.")
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names
                   if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise FileNotFoundError(f"--image_path {path} holds no image ({', '.join(IMAGE_EXTS)}).")
    return files


def output_names(files: list[str], root: str) -> list[str]:
    """Each input's path relative to root with a .png extension; inputs that would share a name (a.png and a.jpg)
    keep their extension in it (a_png.png, a_jpg.png), so no output overwrites another."""
    rel = [os.path.relpath(f, root) if os.path.isdir(root) else os.path.basename(f) for f in files]
    stems = [os.path.splitext(r)[0] for r in rel]
    taken = {s: stems.count(s) for s in stems}
    return [s + ".png" if taken[s] == 1 else f"{s}_{os.path.splitext(r)[1][1:].lower()}.png"
            for s, r in zip(stems, rel)]


def read_image(path: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] as PaddleSeg reads it (cv2.IMREAD_COLOR: grey expanded, alpha dropped, 16 bit scaled
    to 8); an unreadable file is an error naming it."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"predict: cannot decode image {path}; replace it or remove it from --image_path.")
    return img[:, :, ::-1]  # BGR -> RGB


def preprocess(cfg, img: np.ndarray) -> tuple[np.ndarray, list]:
    """The network input [3, h, w] and its trans_info: the config's val_dataset.transforms when it lists them (as
    PaddleSeg's predict does), else the val dataset's own normalisation (our datasets normalise internally)."""
    data = cfg.val_dataset_cfg or {}
    if data.get("transforms"):
        compose = Compose(Builder(cfg).val_transforms, to_rgb=False)  # img is RGB already
        out = compose({"img": img.astype(np.float32), "trans_info": []})
        return out["img"].astype(np.float32), out["trans_info"]
    mean = np.asarray(data.get("mean", (0.5, 0.5, 0.5)), np.float32)[:, None, None]
    std = np.asarray(data.get("std", (0.5, 0.5, 0.5)), np.float32)[:, None, None]
    return (img.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std, []  # [H, W, 3] -> [3, H, W]


def run_predict(cfg, model_path: str, image_path: str, save_dir: str, **overrides) -> list[str]:
    """Write save_dir/pseudo_color/<rel>.png and save_dir/added/<rel>.png at each input's original size, <rel>
    being the input's path under image_path; returns the mask paths."""
    model = load_model(cfg, model_path)
    kw = test_kwargs(cfg, overrides)
    net = inference_model(model, kw.pop("fast_path"))
    pal = palette(model.num_classes)
    files = list_images(image_path)
    out = []
    with paddle.no_grad():
        for f, name in tqdm(list(zip(files, output_names(files, image_path))), desc="predict"):
            img = read_image(f)
            x, trans_info = preprocess(cfg, img)
            probs = predict_probs(net, paddle.to_tensor(x[None]), **kw)
            pred = reverse_transform(probs, trans_info).argmax(1)[0].numpy().astype(np.uint8)
            color = pal[pred]
            for d, arr in (("pseudo_color", color), ("added", (0.5 * img + 0.5 * color).astype(np.uint8))):
                dst = os.path.join(save_dir, d, name)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                Image.fromarray(arr).save(dst)
            out.append(os.path.join(save_dir, "pseudo_color", name))
    return out

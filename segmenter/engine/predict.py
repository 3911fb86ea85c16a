"""Prediction on image files: pseudo-colour masks and overlays written as PNG."""

import os

import cv2
import numpy as np
import paddle
from paddleseg.transforms import Compose
from PIL import Image

from segmenter.convert.files import resolve_weights
from segmenter.datasets.checked import decode_error
from segmenter.engine.builder import Builder
from segmenter.engine.cli import say
from segmenter.engine.compiled import inference_model
from segmenter.engine.infer import predict_probs, reverse_transform
from segmenter.engine.progress import progress
from segmenter.engine.run import class_names_of, inference_mode, load_model, precision_note, test_kwargs
from segmenter.visualize.palette import legend, palette

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def inside(path: str, folder: str) -> bool:
    """Whether path is folder or lies under it (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def list_images(path: str, save_dir: str = None, recursive: bool = True) -> list[str]:
    """The image files at path: a file, or a folder searched recursively (or not), never descending into save_dir,
    so a second run does not predict the first run's outputs. An error names the path if there is none."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--image_path {path} does not exist; pass an image file or a folder of images.")
    if save_dir and inside(path, save_dir):
        raise ValueError(
            f"--image_path {path} lies inside --save_dir {save_dir}, where predictions are written; "
            "pass the folder of your images, or another --save_dir."
        )
    files = []
    for d, subdirs, names in os.walk(path):
        subdirs[:] = (
            []
            if not recursive
            else sorted(s for s in subdirs if not (save_dir and inside(os.path.join(d, s), save_dir)))
        )
        files += [os.path.join(d, f) for f in names if f.lower().endswith(IMAGE_EXTS) and not f.startswith(".")]
    if not files:
        where = "" if recursive else " (sub-folders are not searched with --no_recursive)"
        raise FileNotFoundError(f"--image_path {path} holds no image ({', '.join(IMAGE_EXTS)}){where}.")
    return sorted(files)


def output_names(files: list[str], root: str) -> list[str]:
    """Each input's path relative to root with a .png extension; inputs that would share a name (a.png and a.jpg)
    keep their extension in it (a_png.png, a_jpg.png), so no output overwrites another."""
    rel = [os.path.relpath(f, root) if os.path.isdir(root) else os.path.basename(f) for f in files]
    stems = [os.path.splitext(r)[0] for r in rel]
    taken = {s: stems.count(s) for s in stems}
    return [
        s + ".png" if taken[s] == 1 else f"{s}_{os.path.splitext(r)[1][1:].lower()}.png" for s, r in zip(stems, rel)
    ]


def read_image(path: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] as PaddleSeg reads it (cv2.IMREAD_COLOR: grey expanded, alpha dropped, 16 bit scaled
    to 8); an unreadable or truncated file is an error naming it."""
    why = decode_error(path)  # cv2 decodes a truncated JPEG half grey, saying only "Premature end of JPEG file"
    img = None if why else cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(
            f"predict: cannot decode image {path}{f' ({why})' if why else ''}; replace it or remove it "
            "from --image_path."
        )
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


def run_predict(cfg, model_path: str, image_path: str, save_dir: str, recursive: bool = True, **overrides) -> list[str]:
    """Write save_dir/pseudo_color/<rel>.png and save_dir/added/<rel>.png at each input's original size, <rel>
    being the input's path under image_path, and save_dir/legend.png naming the colours of the classes predicted;
    returns the mask paths."""
    model = load_model(cfg, model_path)
    kw = test_kwargs(cfg, overrides)
    precision = kw.pop("precision")
    net = inference_model(model, kw.pop("fast_path"), precision)
    pal = palette(model.num_classes)
    files = list_images(image_path, save_dir, recursive)
    window = f", windows {kw['crop_size']} stride {kw['stride']}" if kw["is_slide"] else ""
    say(
        "predict",
        cfg,
        weights=resolve_weights(model_path),
        images=f"{len(files)} from {image_path}"
        f"{' and its sub-folders' if recursive and os.path.isdir(image_path) else ''}",
        inference=inference_mode(kw) + window + precision_note(precision),
    )
    out, present = [], set()
    with paddle.no_grad():
        for f, name in progress(list(zip(files, output_names(files, image_path))), len(files), "predict"):
            img = read_image(f)
            x, trans_info = preprocess(cfg, img)
            probs = predict_probs(net, paddle.to_tensor(x[None]), **kw)
            pred = reverse_transform(probs, trans_info).argmax(1)[0].numpy().astype(np.uint8)
            present.update(np.unique(pred).tolist())
            color = pal[pred]
            for d, arr in (("pseudo_color", color), ("added", (0.5 * img + 0.5 * color).astype(np.uint8))):
                dst = os.path.join(save_dir, d, name)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                Image.fromarray(arr).save(dst)
            out.append(os.path.join(save_dir, "pseudo_color", name))
    names = class_names_of(cfg, model.num_classes)
    Image.fromarray(legend(names, pal, 640, sorted(present), row_height=20)).save(os.path.join(save_dir, "legend.png"))
    print(
        f"predict: wrote {len(out)} masks to {os.path.join(save_dir, 'pseudo_color')} and overlays to "
        f"{os.path.join(save_dir, 'added')}; legend {os.path.join(save_dir, 'legend.png')}",
        flush=True,
    )
    return out

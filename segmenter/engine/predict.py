"""Prediction on image files: pseudo-colour masks and overlays written as PNG.

A folder run keeps going past an image that does not decode (each is named, then the run ends non-zero), writes
every output under a temporary name and renames it (a killed run leaves no half-written PNG, so `skip_existing`
can trust what is there), and under `paddle.distributed.launch` each rank predicts its share of the sorted list
(`segmenter.shards`). The loop keeps no state per image beyond the names of a few unreadable ones.
"""

import os
import sys

import cv2
import numpy as np
import paddle
import paddle.distributed as dist
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
from segmenter.engine.stops import collective
from segmenter.shards import launched, share
from segmenter.visualize.palette import legend, palette

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NAMED = 5  # unreadable images a summary names (each is also named in its own line as it is met)


class UnreadableImage(ValueError):
    """An input image that does not decode (a damaged or truncated file)."""

    def __init__(self, path: str, why: str):
        self.path, self.why = path, why
        super().__init__(
            f"predict: cannot decode image {path}{f' ({why})' if why else ''}; replace it or remove it "
            "from --image_path."
        )


class PredictIncomplete(ValueError):
    """Some inputs could not be decoded; every other one was written."""


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
        raise UnreadableImage(path, why)
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


def write_png(arr: np.ndarray, dst: str) -> None:
    """Write arr as the PNG dst under a temporary name in its folder, then rename it: a run killed at any moment
    leaves dst whole or absent, never half-written."""
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.part")  # hidden; a rerun overwrites it
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, dst)


def outputs_of(save_dir: str, name: str) -> tuple[str, str]:
    """(mask, overlay) paths of the output name."""
    return os.path.join(save_dir, "pseudo_color", name), os.path.join(save_dir, "added", name)


def gathered(row: np.ndarray, world: int) -> np.ndarray:
    """[world, k]: every rank's row, on every rank."""
    if world == 1:
        return row[None]
    rows = []
    with collective("predict: gathering the ranks' counts"):
        dist.all_gather(rows, paddle.to_tensor(row))
    return np.stack([r.numpy() for r in rows])


def run_predict(
    cfg,
    model_path: str,
    image_path: str,
    save_dir: str,
    recursive: bool = True,
    skip_existing: bool = False,
    **overrides,
) -> dict:
    """Write save_dir/pseudo_color/<rel>.png and save_dir/added/<rel>.png at each input's original size, <rel>
    being the input's path under image_path, and save_dir/legend.png naming the colours of the classes predicted;
    returns {"written", "existing", "unreadable"} over all ranks.

    In a folder, an image that does not decode is named on stderr and skipped; the others are written, then
    PredictIncomplete says how many were not. skip_existing keeps the inputs whose two PNGs are already there
    (each PNG is renamed into place only when complete). Under paddle.distributed.launch every rank takes its
    share of the sorted inputs and rank 0 reports the job's totals."""
    rank, world = launched()
    if world > 1:
        dist.init_parallel_env()
    model = load_model(cfg, model_path)
    kw = test_kwargs(cfg, overrides)
    precision = kw.pop("precision")
    net = inference_model(model, kw.pop("fast_path"), precision)
    pal = palette(model.num_classes)
    files = list_images(image_path, save_dir, recursive)
    mine = share(list(zip(files, output_names(files, image_path))), rank, world)
    todo = [(f, n) for f, n in mine if not (skip_existing and all(map(os.path.isfile, outputs_of(save_dir, n))))]
    window = f", windows {kw['crop_size']} stride {kw['stride']}" if kw["is_slide"] else ""
    facts = {}
    if world > 1:
        facts["ranks"] = f"{world}; rank {rank} predicts every {world}th image of the sorted list: {len(mine)}"
    if skip_existing:
        facts["skip_existing"] = f"{len(mine) - len(todo)} already written, {len(todo)} to predict"
    say(
        "predict",
        cfg,
        weights=resolve_weights(model_path),
        images=f"{len(files)} from {image_path}"
        f"{' and its sub-folders' if recursive and os.path.isdir(image_path) else ''}",
        inference=inference_mode(kw) + window + precision_note(precision),
        **facts,
    )
    written, bad, named, present = 0, 0, [], np.zeros(model.num_classes, np.int64)
    with paddle.no_grad():
        for f, name in progress(todo, len(todo), "predict"):
            try:
                img = read_image(f)
            except UnreadableImage as e:
                if not os.path.isdir(image_path):
                    raise
                print(f"predict: cannot decode image {f} ({e.why or 'unknown format'}); skipped", file=sys.stderr)
                bad += 1
                named += [f] if len(named) < NAMED else []
                continue
            x, trans_info = preprocess(cfg, img)
            probs = predict_probs(net, paddle.to_tensor(x[None]), **kw)
            pred = reverse_transform(probs, trans_info).argmax(1)[0].numpy().astype(np.uint8)
            present[np.unique(pred)] = 1
            color = pal[pred]
            mask, added = outputs_of(save_dir, name)
            write_png((0.5 * img + 0.5 * color).astype(np.uint8), added)
            write_png(color, mask)  # the mask last: skip_existing wants both
            written += 1
    rows = gathered(np.concatenate([[written, len(mine) - len(todo), bad], present]).astype(np.int64), world)
    total = dict(zip(("written", "existing", "unreadable"), rows[:, :3].sum(0).tolist()))
    if rank == 0:
        report(cfg, model.num_classes, pal, rows, total, len(files), save_dir)
    if world > 1:  # every rank exits after rank 0 reported: the launcher stops the others at a first exit 1
        with collective("predict: waiting for rank 0's report"):
            dist.barrier()
    if bad or (rank == 0 and total["unreadable"]):
        raise PredictIncomplete(incomplete(rank, world, rows, bad, named, len(files), save_dir))
    return total


def report(cfg, num_classes: int, pal: np.ndarray, rows: np.ndarray, total: dict, n: int, save_dir: str) -> None:
    """Rank 0's closing lines: the legend of the classes predicted, the totals of every rank and where they went."""
    present = rows[:, 3:].any(0)
    # masks kept by skip_existing were not read: their classes are unknown, so the legend names every class
    shown = range(num_classes) if total["existing"] else np.flatnonzero(present).tolist()
    names = class_names_of(cfg, num_classes)
    write_png(legend(names, pal, 640, list(shown), row_height=20), os.path.join(save_dir, "legend.png"))
    kept = f"; {total['existing']} already there were kept (--skip_existing)" if total["existing"] else ""
    ranks = ""
    if len(rows) > 1:
        each = ", ".join(f"rank {r}: {w[0]}" for r, w in enumerate(rows.tolist()))
        ranks = f" ({each}; each rank writes to --save_dir on its own node)"
    print(
        f"predict: wrote {total['written']} of {n} images: masks to {os.path.join(save_dir, 'pseudo_color')} and "
        f"overlays to {os.path.join(save_dir, 'added')}{ranks}{kept}; legend {os.path.join(save_dir, 'legend.png')}",
        flush=True,
    )


def incomplete(rank: int, world: int, rows: np.ndarray, bad: int, named: list, n: int, save_dir: str) -> str:
    """The closing error of a run that met unreadable images: how many, which, and how to finish the run."""
    finish = "replace or remove them, then rerun with --skip_existing to predict only what is missing."
    if rank != 0:
        return f"predict: rank {rank}: {bad} of its images could not be decoded (named above); {finish}"
    total = int(rows[:, 2].sum())
    where = (
        "named above"
        if world == 1
        else "each named in the log of its rank: "
        + ", ".join(f"rank {r}: {int(b)}" for r, b in enumerate(rows[:, 2]) if b)
    )
    first = f": {', '.join(named)}{', ...' if total > len(named) else ''}" if named else ""
    done = int(rows[:, 0].sum() + rows[:, 1].sum())
    return (
        f"predict: {total} of {n} images could not be decoded ({where}){first}; the other {done} are in "
        f"{save_dir}. {finish[0].upper()}{finish[1:]}"
    )

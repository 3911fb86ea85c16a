"""Errors from data name the file, with PaddleSeg's own dataset classes too, also inside worker processes."""

import os

import numpy as np
import pytest
from paddleseg.cvlibs import SegBuilder
from PIL import Image

import segmenter  # noqa: F401
from segmenter.datasets.checked import DataError
from segmenter.engine.evaluate import evaluate
from segmenter.engine.run import load_config
from segmenter.engine.train import train
from tests import layouts

TINY_MODEL = """
model:
  type: Segmenter
  num_classes: {n}
  backbone: {{type: SegmenterViT, img_size: 32, patch_size: 8, in_channels: 3, embed_dim: 32, depth: 1,
             num_heads: 2, mlp_ratio: 2, qkv_bias: True, distilled: False, norm_eps: 1.0e-06,
             pos_embed_interp: bilinear, drop_rate: 0.0, attn_drop_rate: 0.0, drop_path_rate: 0.0,
             pretrained: null}}
  decoder: {{name: linear}}
optimizer: {{type: SGD, momentum: 0.9}}
lr_scheduler: {{type: PolynomialDecay, learning_rate: 0.01, end_lr: 0.0, power: 0.9}}
loss: {{types: [{{type: CrossEntropyLoss}}], coef: [1]}}
"""


def dataset_yaml(root: str, n: int = 6, crop: int = 32) -> str:
    """PaddleSeg's generic Dataset on root/{train,val}.txt with a small random crop."""
    return f"""
batch_size: 2
iters: 2
train_dataset:
  type: Dataset
  dataset_root: {root}
  train_path: {root}/train.txt
  num_classes: {n}
  mode: train
  transforms: [{{type: RandomPaddingCrop, crop_size: [{crop}, {crop}]}}, {{type: Normalize}}]
val_dataset:
  type: Dataset
  dataset_root: {root}
  val_path: {root}/val.txt
  num_classes: {n}
  mode: val
  transforms: [{{type: Resize, target_size: [48, 40]}}, {{type: Normalize}}]
""" + TINY_MODEL.format(n=n)


@pytest.fixture
def data(tmp_path):
    root = layouts.file_list(str(tmp_path), n_train=4, n_val=2)
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(dataset_yaml(root))
    return root, str(cfg)


def corrupt_image(root):
    path = os.path.join(root, "images/train_1.jpg")
    with open(path, "wb") as f:
        f.write(b"\xff\xd8 not a jpeg")
    return path, "cannot be decoded"


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A natural-looking RGB uint8 picture: smooth shading, edges and sensor noise (what a camera JPEG holds)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack(
        [110 + 80 * np.sin(7 * x + c) * np.cos(5 * y - c) + 40 * (x + y > 0.8 + 0.1 * c) for c in range(3)], -1
    )
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def truncate_jpeg(path: str) -> None:
    """Overwrite path with a real JPEG photo of the same size, cut after half its bytes (a broken download)."""
    h, w = np.asarray(Image.open(path)).shape[:2]
    Image.fromarray(photo(h, w)).save(path, format="JPEG", quality=90)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def truncated_image(root):
    path = os.path.join(root, "images/train_1.jpg")
    truncate_jpeg(path)
    return path, "image file is truncated"


def label_value_in_a_corner(root):
    path = os.path.join(root, "labels/train_0.png")
    lab = np.asarray(Image.open(path)).copy()
    lab[-3:, -3:] = 9  # num_classes is 6; a 32 px random crop of 375x500 almost never holds the corner
    Image.fromarray(lab).save(path)
    return path, "holds values [9] outside [0, 6) that are not the ignore index 255"


def missing_label(root):
    path = os.path.join(root, "labels/train_2.png")
    os.remove(path)
    return path, "does not exist"


def bad_label_value(root):
    path = os.path.join(root, "labels/train_0.png")
    lab = np.asarray(Image.open(path)).copy()
    lab[::2] = 7  # num_classes is 6; every other row, so every random crop holds some
    Image.fromarray(lab).save(path)
    return path, "holds values [7] outside [0, 6)"


def size_mismatch(root):
    path = os.path.join(root, "labels/train_3.png")
    Image.open(path).resize((100, 80), Image.NEAREST).save(path)
    return path, "is 100x80 but image"


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize(
    "break_it", [corrupt_image, truncated_image, missing_label, bad_label_value, label_value_in_a_corner, size_mismatch]
)
def test_train_data_error_names_the_file(data, break_it, num_workers, tmp_path):
    root, cfg = data
    path, what = break_it(root)
    b = SegBuilder(load_config(cfg))
    with pytest.raises(Exception) as e:  # every sample is read within 2 epochs of 2 batches of 2
        train(
            b.model,
            b.train_dataset,
            b.optimizer,
            b.lr_scheduler,
            lambda x, y: b.loss["types"][0](x, y),
            4,
            2,
            str(tmp_path / "out"),
            num_workers=num_workers,
            log_iters=100,
            save_interval=100,
        )
    msg = str(e.value)
    assert path in msg and what in msg, f"num_workers={num_workers}: error does not name {path} / '{what}':\n{msg}"


def test_val_data_error_names_the_file(data):
    root, cfg = data
    path = os.path.join(root, "labels/val_1.png")
    os.remove(path)
    b = SegBuilder(load_config(cfg))
    with pytest.raises(DataError, match=f"label {path} does not exist"):
        evaluate(b.model, b.val_dataset, 6, progress=False)


def test_empty_file_list_is_an_error(data):
    root, cfg = data
    open(os.path.join(root, "val.txt"), "w").close()
    b = SegBuilder(load_config(cfg))
    with pytest.raises(DataError, match="lists no sample"):
        evaluate(b.model, b.val_dataset, 6, progress=False)


def test_val_tool_reports_a_bad_file_in_one_line(data, tmp_path, capsys):
    """val.py reads its images in its own process, so this runs it in the test process (tests.helpers.tool_result:
    no ~4 s of imports); an exception escaping it, a traceback in a process, fails the test."""
    import paddle

    from tests.helpers import tool_result

    root, cfg = data
    weights = str(tmp_path / "w.pdparams")
    paddle.save(SegBuilder(load_config(cfg)).model.state_dict(), weights)
    path = os.path.join(root, "images/val_0.jpg")
    with open(path, "wb") as f:
        f.write(b"\x89PNG broken")
    r = tool_result("val.py", ["--config", cfg, "--model_path", weights], capsys)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and last.startswith(f"error: image {path} cannot be decoded"), (
        f"exit {r.returncode}, last stderr line: {last}"
    )
    assert "Traceback" not in r.stderr, r.stderr[-1500:]


def paint_corner(path: str, value: int, top_left: bool = False) -> None:
    """Set the bottom-right (or top-left) 3x3 pixels of a label PNG to value, keeping a palette PNG a palette PNG."""
    im = Image.open(path)
    a = np.array(im)
    a[(slice(0, 3),) * 2 if top_left else (slice(-3, None),) * 2] = value
    out = Image.fromarray(a)
    if im.mode == "P":
        out.putpalette(im.getpalette())  # an L image with a palette becomes P with the same indices
    out.save(path)


@pytest.mark.parametrize(
    "kind, ignored, top, bad, shown",
    [
        ("ADE20K", 0, 150, 151, "[151] outside [0, 151] (ADE20K reads file value v as class v - 1; 0 is ignored)"),
        ("Cityscapes", 255, 18, 19, "[19] outside [0, 19)"),
        ("PascalContext", 255, 59, 60, "[60] outside [0, 60)"),
        ("PascalVOC", 255, 20, 21, "[21] outside [0, 21)"),
        ("Dataset", 255, 5, 6, "[6] outside [0, 6)"),
    ],
)
def test_label_files_are_checked_as_each_paddleseg_class_reads_them(kind, ignored, top, bad, shown, tmp_path):
    """A release's own values pass: the ignored one (ADE20K's 0 'other', 255 borders) and the last class as the file
    stores it (ADE20K's 150, read as class 149 after PaddleSeg's -1 shift); one bad value in a corner fails on the
    first read of the file, before a random crop can cut it away."""
    from segmenter.datasets.checked import CheckedDataset
    from tests.test_dataset_classes import config

    cfg, n = config(tmp_path, kind)
    ds = SegBuilder(load_config(cfg)).train_dataset
    ok, broken = ds.file_list[0][1], ds.file_list[1][1]
    paint_corner(ok, ignored)
    paint_corner(ok, top, top_left=True)
    paint_corner(broken, bad)
    data = CheckedDataset(ds, n)
    assert data[0]["label"].shape == (48, 48), f"{kind}: the sample was not cropped to 48x48"
    with pytest.raises(DataError) as e:
        data[1]
    assert f"label {broken} holds values {shown}" in str(e.value), f"{kind}: {e.value}"


def run_tool(name: str, args: list):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, os.path.join(repo, "tools", name), *args],
        cwd=repo,
        env=dict(os.environ, PYTHONPATH=repo),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # two tool runs in subprocesses (~8 s); the in-process cases above stay in the fast tier
def test_train_and_predict_tools_stop_on_a_truncated_photo(data, tmp_path):
    """As a user meets it: a JPEG cut in half in their own PaddleSeg Dataset, train.py with workers, predict.py."""
    import paddle

    root, cfg = data
    path, _ = truncated_image(root)
    r = run_tool("train.py", ["--config", cfg, "--save_dir", str(tmp_path / "out"), "--num_workers", "2"])
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and last.startswith(
        f"error: image {path} cannot be decoded (OSError: image file is truncated"
    ), f"train.py exit {r.returncode}, last line: {last}"
    assert "Traceback" not in r.stderr, r.stderr[-1500:]  # a worker's error is one line too, not a thread's dump
    weights = str(tmp_path / "w.pdparams")
    paddle.save(SegBuilder(load_config(cfg)).model.state_dict(), weights)
    r = run_tool(
        "predict.py",
        ["--config", cfg, "--model_path", weights, "--image_path", path, "--save_dir", str(tmp_path / "pred")],
    )
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and f"cannot decode image {path} (OSError: image file is truncated" in last, (
        f"predict.py exit {r.returncode}, last line: {last}"
    )
    assert "Traceback" not in r.stderr, r.stderr[-1500:]

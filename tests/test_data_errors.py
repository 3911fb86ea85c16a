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
@pytest.mark.parametrize("break_it", [corrupt_image, missing_label, bad_label_value, size_mismatch])
def test_train_data_error_names_the_file(data, break_it, num_workers, tmp_path):
    root, cfg = data
    path, what = break_it(root)
    b = SegBuilder(load_config(cfg))
    with pytest.raises(Exception) as e:  # every sample is read within 2 epochs of 2 batches of 2
        train(b.model, b.train_dataset, b.optimizer, b.lr_scheduler, lambda x, y: b.loss["types"][0](x, y), 4, 2,
              str(tmp_path / "out"), num_workers=num_workers, log_iters=100, save_interval=100)
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


def test_val_tool_reports_a_bad_file_in_one_line(data, tmp_path):
    import subprocess
    import sys

    import paddle
    root, cfg = data
    weights = str(tmp_path / "w.pdparams")
    paddle.save(SegBuilder(load_config(cfg)).model.state_dict(), weights)
    path = os.path.join(root, "images/val_0.jpg")
    with open(path, "wb") as f:
        f.write(b"\x89PNG broken")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, os.path.join(repo, "tools", "val.py"), "--config", cfg, "--model_path",
                        weights], cwd=repo, env=dict(os.environ, PYTHONPATH=repo), capture_output=True, text=True,
                       timeout=300)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and last.startswith(f"error: image {path} cannot be decoded"), \
        f"exit {r.returncode}, last stderr line: {last}"
    assert "Traceback" not in r.stderr, r.stderr[-1500:]

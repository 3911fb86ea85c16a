"""Exactness with PaddleSeg's random transforms (the shipped ADE20K train pipeline, which draws from the global
np.random / random): resume and --num_workers 2 give the weights of one uninterrupted single-worker run."""

import os
import shutil

import numpy as np
import paddle
import yaml

from segmenter.engine.run import load_config, run_train
from tests import layouts
from tests.test_data_errors import TINY_MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ade_config(tmp_path, root: str) -> str:
    """configs/_base_/ade20k.yml's datasets and transforms as shipped, crop 512 -> 48 and a tiny model."""
    with open(os.path.join(ROOT, "configs", "_base_", "ade20k.yml")) as f:
        base = yaml.safe_load(f)
    for key in ("train_dataset", "val_dataset"):
        base[key]["dataset_root"] = root
    crop = next(t for t in base["train_dataset"]["transforms"] if t["type"] == "RandomPaddingCrop")
    crop["crop_size"] = [48, 48]
    names = [t["type"] for t in base["train_dataset"]["transforms"]]
    assert names == ["ResizeStepScaling", "RandomPaddingCrop", "RandomHorizontalFlip", "RandomDistort", "Normalize"]
    model = yaml.safe_load(TINY_MODEL.format(n=150))
    path = tmp_path / "ade.yml"
    path.write_text(yaml.safe_dump({**base, "batch_size": 2, "iters": 6, **model}))
    return str(path)


def weights(run: str, ckpt: str) -> dict:
    return {k: v.numpy() for k, v in paddle.load(os.path.join(run, ckpt, "model.pdparams")).items()}


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_resume_and_workers_equal_uninterrupted_with_paddleseg_transforms(tmp_path):
    root = layouts.ade20k(str(tmp_path), n_train=5, n_val=1)  # 5 samples, batch 2: epochs end mid-run
    cfg = ade_config(tmp_path, root)
    full, half, workers, other = (str(tmp_path / n) for n in ("full", "half", "workers", "other"))
    run_train(load_config(cfg), full, seed=3, save_interval=6, log_iters=100)
    run_train(load_config(cfg), half, seed=3, save_interval=3, log_iters=100)
    shutil.rmtree(os.path.join(half, "iter_6"))  # the interruption: only iter_3 survives
    run_train(load_config(cfg), half, seed=3, save_interval=6, log_iters=100, resume_model=os.path.join(half, "iter_3"))
    run_train(load_config(cfg), workers, seed=3, save_interval=6, log_iters=100, num_workers=2)
    run_train(load_config(cfg), other, seed=4, save_interval=6, log_iters=100)
    a = weights(full, "iter_6")
    d_resume, d_workers = max_diff(a, weights(half, "iter_6")), max_diff(a, weights(workers, "iter_6"))
    assert d_resume <= 1e-6, f"resumed vs uninterrupted: max|diff|={d_resume:.2e}"
    assert d_workers <= 1e-6, f"--num_workers 2 vs 0: max|diff|={d_workers:.2e}"
    d_seed = max_diff(a, weights(other, "iter_6"))
    assert d_seed > 1e-4, f"seed 4 trains to the same weights as seed 3 (max|diff|={d_seed:.2e}): test is vacuous"

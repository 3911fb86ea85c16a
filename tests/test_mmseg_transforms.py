"""MMSeg's train transforms (segmenter/datasets/mmseg_pipeline.py) outside the parity tests: bad values are refused
with a message naming the parameter (a shipped config carrying one fails as it is built), an image that was
already normalised is refused, and a shipped MMSeg config's samples depend on (seed, epoch, index) only."""

import os

import numpy as np
import pytest
import yaml

from segmenter.datasets.mmseg_pipeline import (
    MMSegPhotoMetricDistortion,
    MMSegRandomCrop,
    MMSegRandomFlip,
    MMSegRandomResize,
)
from tests import layouts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BAD = [
    (MMSegRandomCrop, {"crop_size": [512, 0]}, "crop_size"),
    (MMSegRandomCrop, {"crop_size": [512]}, "crop_size"),
    (MMSegRandomCrop, {"crop_size": [512.5, 512]}, "crop_size"),
    (MMSegRandomCrop, {"crop_size": "512"}, "crop_size"),
    (MMSegRandomCrop, {"crop_size": [512, 512], "cat_max_ratio": 0}, "cat_max_ratio"),
    (MMSegRandomCrop, {"crop_size": [512, 512], "cat_max_ratio": 1.5}, "cat_max_ratio"),
    (MMSegRandomCrop, {"crop_size": [512, 512], "cat_max_ratio": "0.75"}, "cat_max_ratio"),
    (MMSegRandomResize, {"ratio_range": [2.0, 0.5]}, "ratio_range"),
    (MMSegRandomResize, {"ratio_range": [0.5]}, "ratio_range"),
    (MMSegRandomResize, {"ratio_range": [-0.5, 2.0]}, "ratio_range"),
    (MMSegRandomResize, {"scale": [2048, 0]}, "scale"),
    (MMSegRandomFlip, {"prob": 1.5}, "prob"),
    (MMSegPhotoMetricDistortion, {"contrast_range": [1.5, 0.5]}, "contrast_range"),
    (MMSegPhotoMetricDistortion, {"saturation_range": [0.5]}, "saturation_range"),
    (MMSegPhotoMetricDistortion, {"hue_delta": -1}, "hue_delta"),
    (MMSegPhotoMetricDistortion, {"brightness_delta": 0.5}, "brightness_delta"),
]


@pytest.mark.parametrize("cls,kwargs,name", BAD, ids=[f"{c.__name__}-{n}-{i}" for i, (c, _, n) in enumerate(BAD)])
def test_bad_value_is_refused_naming_the_parameter(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"{cls.__name__}: {name} "):
        cls(**kwargs)


def test_good_values_build():
    MMSegRandomCrop(crop_size=[512, 640], cat_max_ratio=1)
    MMSegRandomResize(scale=[2048, 512], ratio_range=[1, 1])
    MMSegPhotoMetricDistortion(brightness_delta=0, hue_delta=0)


def test_unknown_key_fails():
    with pytest.raises(TypeError, match="crop_sise"):
        MMSegRandomCrop(crop_sise=[512, 512])


@pytest.mark.parametrize("cls", [MMSegRandomResize, MMSegPhotoMetricDistortion])
def test_normalised_image_is_refused(cls):
    data = {"img": np.full((8, 8, 3), -0.25, np.float32), "label": np.zeros((8, 8), np.uint8), "gt_fields": ["label"]}
    with pytest.raises(ValueError, match=f"{cls.__name__} works on the decoded 0..255 image.*before Normalize"):
        cls()(data)


def shipped_train_set(tmp_path, transforms_edit=None):
    """PaddleSeg's ADE20K from the shipped ViT-T mask config on the stand-in layout (transforms edited if asked)."""
    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config

    root = layouts.ade20k(str(tmp_path), n_train=3, n_val=1)
    shipped = os.path.join(ROOT, "configs", "segmenter_mmseg", "segmenter_vit_tiny_mask_ade20k_512x512_160k.yml")
    transforms = load_config(shipped).dic["train_dataset"]["transforms"]
    if transforms_edit:
        transforms_edit(transforms)
    path = tmp_path / "row.yml"
    train = {"dataset_root": root, "transforms": transforms}
    path.write_text(yaml.safe_dump({"_base_": shipped, "train_dataset": train, "val_dataset": {"dataset_root": root}}))
    return Builder(load_config(str(path))).train_dataset


def test_shipped_config_with_a_bad_crop_fails_naming_it(tmp_path):
    def bad(transforms):
        next(t for t in transforms if t["type"] == "MMSegRandomCrop")["cat_max_ratio"] = 7.5

    with pytest.raises(Exception, match="MMSegRandomCrop: cat_max_ratio must be a number in"):
        shipped_train_set(tmp_path, bad)


def test_samples_depend_on_seed_epoch_index_only(tmp_path):
    """The engine's CheckedDataset reseeds np.random per (seed, epoch, index); MMSeg's transforms draw only from
    it, so reading order (workers, resume) cannot change a sample."""
    from segmenter.datasets.checked import CheckedDataset

    data = CheckedDataset(shipped_train_set(tmp_path), num_classes=150, seed=3)
    n = len(data)
    ks = list(range(2 * n))  # two epochs
    forward = {k: data[k] for k in ks}
    np.random.seed(123)  # whatever state a worker starts from
    backward = {k: data[k] for k in reversed(ks)}
    for k in ks:
        for key in ("img", "label"):
            assert np.array_equal(forward[k][key], backward[k][key]), f"sample {k} {key} depends on reading order"
    assert forward[0]["img"].shape == (3, 512, 512), forward[0]["img"].shape
    differ = [not np.array_equal(forward[k]["img"], forward[k + n]["img"]) for k in range(n)]
    assert all(differ), f"epochs 0 and 1 gave the same sample for indices {[k for k in range(n) if not differ[k]]}"
    other = CheckedDataset(data.dataset, num_classes=150, seed=4)[0]
    assert not np.array_equal(other["img"], forward[0]["img"]), "seeds 3 and 4 gave the same sample 0"


@pytest.mark.parametrize("prob", [0.0, 0.2, 0.9, 1.0])
def test_random_flip_flips_with_probability_prob(prob):
    """prob is the chance of a flip (MMSeg's RandomFlip(prob=0.2) flips one image in five), not of keeping it."""
    np.random.seed(0)
    flip, n = MMSegRandomFlip(prob=prob), 2000
    img = np.arange(12, dtype=np.float32).reshape(2, 2, 3)  # [H, W, C], its two columns differ
    flips = sum(not np.array_equal(flip({"img": img.copy(), "gt_fields": []})["img"], img) for _ in range(n))
    sd = (n * prob * (1 - prob)) ** 0.5
    assert abs(flips - n * prob) <= 4 * sd, (
        f"prob {prob}: {flips} of {n} flipped, expected {n * prob:.0f} +- {4 * sd:.0f}"
    )

"""Our MMSeg train transforms (segmenter/datasets/mmseg_pipeline.py) against MMSeg's real ones, built from the
mmseg/mmcv classes and run on MMSeg's dict layout (BGR uint8 `img`, `gt_seg_map`), same np.random seed: images
and labels must be equal, and both sides must have drawn the same random numbers (the generator states after
the transform are compared). Then the whole train pipeline: PaddleSeg's ADE20K dataset built from a shipped
config against MMSeg's pipeline from the wheel's config plus its SegDataPreProcessor, on the same files."""

import os

import numpy as np
import pytest
import yaml
from PIL import Image

pytest.importorskip("mmseg")

from parity_tests import mmlab  # noqa: E402
from segmenter.datasets.mmseg_pipeline import (  # noqa: E402
    MMSegPhotoMetricDistortion,
    MMSegRandomCrop,
    MMSegRandomFlip,
    MMSegRandomResize,
    MMSegResize,
)
from tests import layouts  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MM = os.path.join(os.path.dirname(__import__("mmseg").__file__), ".mim", "configs")
SIZES = [(512, 683), (375, 500)]  # (H, W)
SEEDS = range(8)


def mm_transform(cfg: dict):
    """A transform from MMSeg's registry, built in MMSeg's scope (RandomResize then builds mmseg's Resize)."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import TRANSFORMS

    mmlab.mmseg_registry()
    with DefaultScope.overwrite_default_scope("mmseg"):
        return TRANSFORMS.build(cfg)


def pair(h: int, w: int, seed: int):
    """RGB uint8 with smooth ramps and noise (resize rounding shows) and a label where class 7 covers ~85%, with
    a few other classes and an ignored (255) band, so cat_max_ratio 0.75 rejects most crops."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], -1) + rng.integers(-20, 21, (h, w, 3))
    label = np.full((h, w), 7, np.uint8)
    label[: h // 8] = 255
    b = min(60, h // 3, w // 3)  # block side
    for k, (y, x) in enumerate(rng.integers(0, [h - b, w - b], (4, 2))):
        label[y : y + b, x : x + b] = k
    return np.clip(img, 0, 255).astype(np.uint8), label


def run_both(ours, theirs, rgb: np.ndarray, label: np.ndarray, seed: int):
    """(our img, our label, MMSeg's img turned RGB, MMSeg's label); the generators must end in one state."""
    mm = {
        "img": np.ascontiguousarray(rgb[..., ::-1]),
        "gt_seg_map": label.copy(),
        "seg_fields": ["gt_seg_map"],
        "img_shape": rgb.shape[:2],
        "ori_shape": rgb.shape[:2],
    }
    np.random.seed(seed)
    mm = theirs(mm)
    mm_state = np.random.get_state()[1:3]
    # PaddleSeg's loader gives float32 RGB (cv2.imread, BGR2RGB) and the ADE20K label already shifted (uint8)
    data = {"img": rgb.astype(np.float32), "label": label.copy(), "gt_fields": ["label"], "trans_info": []}
    np.random.seed(seed)
    data = ours(data)
    state = np.random.get_state()[1:3]
    assert np.array_equal(state[0], mm_state[0]) and state[1] == mm_state[1], (
        f"seed {seed}: the two transforms drew different amounts of random numbers"
    )
    return data["img"], data["label"], mm["img"][..., ::-1], mm["gt_seg_map"]


def assert_same(got, want, what: str):
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs MMSeg {want.shape}"
    n = int((got.astype(np.int64) != want.astype(np.int64)).sum())
    assert n == 0, f"{what}: {n} of {got.size} values differ (max|diff|={np.abs(got.astype(int) - want).max()})"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("keep_ratio", [True, False])
def test_random_resize(size, keep_ratio):
    ours = MMSegRandomResize(scale=[2048, 512], ratio_range=[0.5, 2.0], keep_ratio=keep_ratio)
    theirs = mm_transform(dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=keep_ratio))
    shapes = set()
    for seed in SEEDS:
        rgb, label = pair(*size, seed)
        img, lab, mm_img, mm_lab = run_both(ours, theirs, rgb, label, seed)
        assert img.dtype == np.uint8, img.dtype
        assert_same(img, mm_img, f"seed {seed} image")
        assert_same(lab, mm_lab, f"seed {seed} label")
        shapes.add(img.shape)
    assert len(shapes) == len(SEEDS), f"the ratio draws gave only {len(shapes)} sizes: {shapes}"


def test_random_resize_rounds_half_up():
    """10x5 scaled by exactly 0.5: width 2.5 becomes 3 as mmcv's int(x + 0.5) has it (round() would give 2)."""
    ours = MMSegRandomResize(scale=[5, 3], ratio_range=[1.0, 1.0])
    theirs = mm_transform(dict(type="RandomResize", scale=(5, 3), ratio_range=(1.0, 1.0), keep_ratio=True))
    rgb, label = pair(10, 5, 0)
    img, lab, mm_img, mm_lab = run_both(ours, theirs, rgb, label, 0)
    assert img.shape[:2] == (5, 3), img.shape
    assert_same(img, mm_img, "image")
    assert_same(lab, mm_lab, "label")


def test_val_resize_matches_mmseg_resize_and_keeps_its_setting():
    """MMSeg's test-time Resize(scale=(2048, 512), keep_ratio=True) on uint8, image for image, through a 5:1
    panorama (where PaddleSeg's ResizeByShort lowers its own short_size for every later image) and then the
    usual sizes; trans_info records each original size so evaluation resizes the prediction back."""
    ours = MMSegResize(scale=[2048, 512], keep_ratio=True)
    theirs = mm_transform(dict(type="Resize", scale=(2048, 512), keep_ratio=True))
    for seed, (h, w) in enumerate([(300, 1500), *SIZES, (333, 480)]):
        rgb, _ = pair(h, w, seed)
        mm = theirs({"img": np.ascontiguousarray(rgb[..., ::-1]), "img_shape": (h, w), "ori_shape": (h, w)})
        data = ours({"img": rgb.astype(np.float32), "gt_fields": [], "trans_info": []})
        assert data["trans_info"] == [("resize", (h, w))], data["trans_info"]
        assert_same(data["img"], mm["img"][..., ::-1], f"{h}x{w} image")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("crop", [(256, 320), (400, 320)])  # (h, w); 400 exceeds the 375-high image
def test_random_crop_with_cat_max_ratio(size, crop):
    ours = MMSegRandomCrop(crop_size=list(crop), cat_max_ratio=0.75)
    theirs = mm_transform(dict(type="RandomCrop", crop_size=crop, cat_max_ratio=0.75))
    once = MMSegRandomCrop(crop_size=list(crop), cat_max_ratio=1.0)  # the first draw only
    retried = 0
    for seed in SEEDS:
        rgb, label = pair(*size, seed)
        img, lab, mm_img, mm_lab = run_both(ours, theirs, rgb, label, seed)
        assert_same(img, mm_img.astype(np.float32), f"seed {seed} image")
        assert_same(lab, mm_lab, f"seed {seed} label")
        np.random.seed(seed)
        retried += not np.array_equal(lab, once({"img": rgb, "label": label, "gt_fields": ["label"]})["label"])
    assert retried >= len(SEEDS) // 2, f"only {retried} of {len(SEEDS)} seeds redrew the crop: test is vacuous"


@pytest.mark.parametrize("size", SIZES)
def test_random_flip(size):
    ours, theirs = MMSegRandomFlip(prob=0.5), mm_transform(dict(type="RandomFlip", prob=0.5))
    flipped = 0
    for seed in SEEDS:
        rgb, label = pair(*size, seed)
        img, lab, mm_img, mm_lab = run_both(ours, theirs, rgb, label, seed)
        assert_same(img, mm_img.astype(np.float32), f"seed {seed} image")
        assert_same(lab, mm_lab, f"seed {seed} label")
        flipped += not np.array_equal(lab, label)
    assert 0 < flipped < len(SEEDS), f"{flipped} of {len(SEEDS)} seeds flipped"


@pytest.mark.parametrize("size", SIZES)
def test_photometric_distortion(size):
    ours, theirs = MMSegPhotoMetricDistortion(), mm_transform(dict(type="PhotoMetricDistortion"))
    for seed in range(16):  # big images, odd sizes; the tiny-image test below covers the draws' ranges
        rgb, label = pair(*size, seed)
        img, _, mm_img, _ = run_both(ours, theirs, rgb, label, seed)
        assert img.dtype == np.uint8, img.dtype
        assert_same(img, mm_img, f"seed {seed} image")


# ours -> MMSeg's file: one row per dataset base (ImageNet mean at 512, 127.5 at 512, 127.5 at 640)
PIPELINE_ROWS = {
    "upernet_vit/upernet_deit_s16_ade20k_512x512_80k": "vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512",
    "segmenter_mmseg/segmenter_vit_tiny_mask_ade20k_512x512_160k": "segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512",
    "segmenter_mmseg/segmenter_vit_large_mask_ade20k_640x640_160k": "segmenter/segmenter_vit-l_mask_8xb1-160k_ade20k-512x512",
}
# PaddleSeg's Normalize computes (x / 255 - mean) / std in float32, MMSeg (x - 255 mean) / (255 std): 2.4e-07 apart
IMAGE_TOL = 1e-6


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory):
    """The stand-in ADEChallengeData2016 (odd sizes 375x500 and 512x683), its labels given a dominant class and
    a band of 0 ('other', ignored once reduce_zero_label shifts it to 255)."""
    root = layouts.ade20k(str(tmp_path_factory.mktemp("ade")), n_train=2, n_val=1)
    folder = os.path.join(root, "annotations", "training")
    for name in sorted(os.listdir(folder)):
        label = np.asarray(Image.open(os.path.join(folder, name))).copy()
        h, w = label.shape
        label[:, : w // 6] = 0
        label[h // 6 :, w // 6 :] = 9  # 5/6 of the labelled pixels: cat_max_ratio 0.75 redraws
        Image.fromarray(label).save(os.path.join(folder, name))
    return root


def paddleseg_train_set(row: str, root: str, tmp_path):
    """PaddleSeg's ADE20K, built by our engine's builder from the shipped config with only dataset_root changed."""
    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config

    path = tmp_path / "row.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "_base_": os.path.join(ROOT, "configs", row + ".yml"),
                "train_dataset": {"dataset_root": root},
                "val_dataset": {"dataset_root": root},
            }
        )
    )
    return Builder(load_config(str(path))).train_dataset


def mmseg_train_sample(cfg, img_path: str, seg_path: str, preprocessor):
    """MMSeg's train_pipeline from the wheel's config (LoadImageFromFile ... PackSegInputs), then its
    SegDataPreProcessor in training mode (BGR -> RGB, normalise, pad to the crop size)."""
    results = {
        "img_path": img_path,
        "seg_map_path": seg_path,
        "reduce_zero_label": True,
        "seg_fields": [],
        "sample_idx": 0,
    }
    for t in cfg.train_dataloader.dataset.pipeline:
        results = mm_transform(t)(results)
    out = preprocessor({"inputs": [results["inputs"]], "data_samples": [results["data_samples"]]}, training=True)
    sample = out["data_samples"][0]
    return out["inputs"][0].numpy(), sample.gt_sem_seg.data[0].numpy(), sample.metainfo["padding_size"]


@pytest.mark.parametrize("row", sorted(PIPELINE_ROWS))
def test_train_pipeline_equals_mmseg(row, ade_root, tmp_path):
    from mmengine.config import Config

    cfg = Config.fromfile(os.path.join(MM, PIPELINE_ROWS[row] + ".py"))
    preprocessor = mmlab.mmseg_registry().build(cfg.model.data_preprocessor)
    ds = paddleseg_train_set(row, ade_root, tmp_path)
    padded, worst = 0, 0.0
    for idx, (img_path, seg_path) in enumerate(ds.file_list):
        for seed in (0, 5):  # resize ratios 1.32 and 0.94: a crop that fills, one that needs padding
            np.random.seed(seed)
            want_img, want_lab, pad = mmseg_train_sample(cfg, img_path, seg_path, preprocessor)
            np.random.seed(seed)
            got = ds[idx]
            assert np.array_equal(got["label"], want_lab), (
                f"{row} sample {idx} seed {seed}: {int((got['label'] != want_lab).sum())} label pixels differ"
            )
            d = float(np.abs(got["img"] - want_img).max())
            assert got["img"].shape == want_img.shape and d <= IMAGE_TOL, (
                f"{row} sample {idx} seed {seed}: image {got['img'].shape} vs {want_img.shape}, max|diff|={d:.2e}"
            )
            worst, padded = max(worst, d), padded + (sum(pad) > 0)  # (left, right, top, bottom) MMSeg padded
    assert padded, f"{row}: no sample needed padding; the pad step went untested"
    print(f"{row}: {padded} padded samples, image max|diff|={worst:.2e}")


def test_photometric_distortion_many_seeds_tiny_image():
    """500 seeds on a 6x6 image: every draw's whole range shows up (e.g. the hue shift's upper end, 17 not 18)."""
    ours, theirs = MMSegPhotoMetricDistortion(), mm_transform(dict(type="PhotoMetricDistortion"))
    rgb, label = pair(6, 6, 0)
    rgb[0, :6] = [[255, 0, 0], [250, 240, 0], [0, 255, 10], [0, 200, 255], [10, 0, 255], [255, 0, 240]]  # hues
    for seed in range(500):
        img, _, mm_img, _ = run_both(ours, theirs, rgb, label, seed)
        assert_same(img, mm_img, f"seed {seed} image")

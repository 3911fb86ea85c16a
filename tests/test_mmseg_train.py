"""The MMSeg rows train through our engine: 2 iterations with evaluation on a stand-in ADE20K layout, the
shipped config with its backbone cut to one block per UPerNet feature map (4; 2 for the Segmenter rows and the
one-map v0.13 rows, so that the drop-path rates, linear in depth from 0, are not all 0), a small crop and UPerNet heads
of HEAD_CHANNELS channels (backbone widths, heads, losses as shipped; the head widths are checked in
parity_tests/test_mmseg_configs.py). A row whose config equals another's in everything but `iters`
(tests.helpers.CONFIG_TWINS) trains the same model the same way once `iters` is 2, so only the other trains.
Each row's model, optimizer and loader sit in reference cycles, so they are collected after the row: without
that and with the shipped 512/256-channel heads, one process grew to 8.4 GB over the rows (now 2.3 GB)."""

import gc
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from segmenter.engine.run import load_config, run_train
from tests.helpers import CONFIG_TWINS, tiered

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_DEPTH = 2  # blocks kept: one per UPerNet feature map, at least this many
HEAD_CHANNELS = 16
# Every shipped MMSeg row: the 17 UPerNet ViT/DeiT configs (6 of MMSeg v0.13) and MMSeg's 5 Segmenter configs.
ROWS = sorted(
    os.path.join(family, name[:-4])
    for family in ("upernet_vit", "segmenter_mmseg")
    for name in os.listdir(os.path.join(ROOT, "configs", family))
    if name.endswith(".yml")
)
TRAINED = [r for r in ROWS if r not in CONFIG_TWINS]  # the twins train the same model the same way


@pytest.fixture(scope="module")
def ade20k(tmp_path_factory):
    """ADEChallengeData2016 layout: jpg images and png labels (0 = other, 1..150 classes)."""
    root = tmp_path_factory.mktemp("ade") / "ADEChallengeData2016"
    rng = np.random.RandomState(0)
    for split, n in (("training", 4), ("validation", 2)):
        os.makedirs(root / "images" / split)
        os.makedirs(root / "annotations" / split)
        for i in range(n):
            h, w = 48 + 8 * i, 64
            Image.fromarray(rng.randint(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / split / f"{i}.jpg")
            label = np.zeros((h, w), np.uint8)
            label[h // 2 :, :] = 1 + i
            Image.fromarray(label).save(root / "annotations" / split / f"{i}.png")
    return str(root)


def _config(row, ade20k, tmp_path) -> str:
    shipped = load_config(os.path.join(ROOT, "configs", row + ".yml"))
    train_t, val_t = shipped.dic["train_dataset"]["transforms"], shipped.dic["val_dataset"]["transforms"]
    for t in train_t + val_t:  # the resizes, the crop and the padding shrunk for CPU time
        for key, small in (("crop_size", [32, 32]), ("scale", [64, 32]), ("target_size", [32, 32])):
            if key in t:
                t[key] = small
    over = {
        "_base_": os.path.join(ROOT, "configs", row + ".yml"),
        "iters": 2,
        "batch_size": 2,
        "train_dataset": {"dataset_root": ade20k, "transforms": train_t},
        "val_dataset": {"dataset_root": ade20k, "transforms": val_t},
        "model": {"backbone": {"depth": MIN_DEPTH, "img_size": 32}},
    }
    if "upernet" in row:  # the last len(out_indices) blocks: all four, or only the last (MMSeg v0.13's rows)
        n_maps = len(shipped.dic["model"]["backbone"]["out_indices"])
        depth = over["model"]["backbone"]["depth"] = max(MIN_DEPTH, n_maps)
        over["model"]["backbone"]["out_indices"] = list(range(depth))[-n_maps:]
        over["model"]["decode_head"] = {"channels": HEAD_CHANNELS}
        over["model"]["auxiliary_head"] = {"channels": HEAD_CHANNELS}
    else:
        over["test_config"] = {"crop_size": [32, 32], "stride": [32, 32]}
    path = tmp_path / "row.yml"
    path.write_text(yaml.safe_dump(over))
    return str(path)


# The fast tier trains one row of each kind (Segmenter linear and mask, UPerNet, UPerNet v0.13); the suite the 15
# that differ in more than `iters`.
FAST_ROWS = (
    "segmenter_mmseg/segmenter_vit_small_linear_ade20k_512x512_160k",
    "segmenter_mmseg/segmenter_vit_tiny_mask_ade20k_512x512_160k",
    "upernet_vit/upernet_deit_s16_ade20k_512x512_160k",
    "upernet_vit/upernet_deit_s16_v013_ade20k_512x512_80k",
)


@pytest.mark.parametrize("row", tiered(TRAINED, FAST_ROWS))
def test_row_trains_two_iterations_with_eval(row, ade20k, tmp_path):
    """PaddleSeg's ADE20K val samples (label [1, H, W] at the original size, MMSegResize undone) evaluate too."""
    run = tmp_path / "run"
    metrics = run_train(
        load_config(_config(row, ade20k, tmp_path)), str(run), seed=0, do_eval=True, save_interval=2, log_iters=1
    )
    assert os.path.isfile(run / "iter_2" / "model.pdparams"), os.listdir(run)
    assert np.isfinite(metrics["mIoU"]) and metrics["confusion"].sum() > 0, metrics
    gc.collect()  # the trained model, optimizer and loader sit in reference cycles: free them before the next row


def test_upernet_adds_the_auxiliary_logits_in_training_only():
    """The engine weighs one loss per output (coef [1, 0.4]); without the second output both would fall on
    the main logits, so the training output list itself is checked."""
    import paddle

    from segmenter.models import SegmenterViT, UPerNetViT

    model = UPerNetViT(
        num_classes=3,
        backbone=SegmenterViT(img_size=32, embed_dim=32, depth=2, num_heads=1, out_indices=[0, 1]),
        decode_head={"channels": 8},
        auxiliary_head={"channels": 4},
    )
    x = paddle.randn([2, 3, 40, 24])
    model.train()
    outs = model(x)
    assert [o.shape for o in outs] == [[2, 3, 40, 24]] * 2, [o.shape for o in outs]
    (outs[0].mean() + 0.4 * outs[1].mean()).backward()
    assert model.auxiliary_head.conv_seg.weight.grad is not None
    model.eval()
    assert len(model(x)) == 1

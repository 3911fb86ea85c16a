"""Every shipped config states the published architecture of the model its name promises.

The numbers are the papers', not the code's: ViT Ti/S/B/L (Dosovitskiy et al. 2021, Touvron et al. 2021, the
sizes the Segmenter paper's Table 1 uses), the Segmenter mask decoder (2 blocks, width of the encoder, heads =
width // 64: the official `segm/model/factory.py`), and each dataset's class count and training crop.
"""

import glob
import os
import re

import pytest
from paddleseg.cvlibs import Config, manager

import segmenter  # noqa: F401  (registers the components the configs name)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "configs", "segmenter", "*.yml")))
NAME = re.compile(
    r"segmenter_vit_(?P<size>tiny|small|base|large)(?P<hybrid>_r50)?_(?P<decoder>linear|mask)_"
    r"(?P<dataset>ade20k|cityscapes|pascal_context)_(?P<h>\d+)x(?P<w>\d+)_\d+k\.yml$"
)
VIT = {  # size -> (embed_dim, depth, num_heads), patch 16, mlp_ratio 4
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
PATCH, MLP_RATIO = 16, 4
# R50+ViT-B/16 (Dosovitskiy et al. 2021, timm's vit_base_r50_s16_384): ResNet-50's first three stages (3, 4, 9
# bottlenecks) make a stride-16 map that a 1x1 conv embeds, so tokens are 16 pixels as ViT-B/16's.
R50_STAGES, R50_PATCH = [3, 4, 9], 1
MASK_DECODER_LAYERS, HEAD_DIM = 2, 64
DATASETS = {"ade20k": 150, "cityscapes": 19, "pascal_context": 60}  # classes the model predicts


def test_every_shipped_config_has_a_published_name():
    assert len(SHIPPED) >= 8, f"found {len(SHIPPED)} configs under configs/segmenter"
    odd = [os.path.basename(p) for p in SHIPPED if not NAME.search(os.path.basename(p))]
    assert not odd, f"names that state no published architecture: {odd}"


@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.basename(p)[len("segmenter_vit_") : -4] for p in SHIPPED])
def test_shipped_config_architecture_is_the_published_one(path):
    want = NAME.search(os.path.basename(path)).groupdict()
    cfg = Config(path).dic  # PaddleSeg's own _base_ merge
    bb, dec = cfg["model"]["backbone"], cfg["model"]["decoder"]
    d, depth, heads = VIT[want["size"]]
    patch, stem = (R50_PATCH, R50_STAGES) if want["hybrid"] else (PATCH, None)
    got = (bb["embed_dim"], bb["depth"], bb["num_heads"], bb["patch_size"], bb["mlp_ratio"], bb.get("stem_layers"))
    assert got == (d, depth, heads, patch, MLP_RATIO, stem), (
        f"{os.path.basename(path)}: backbone (embed, depth, heads, patch, mlp, stem) = {got}, "
        f"{'R50+' if stem else ''}ViT-{want['size']} is {(d, depth, heads, patch, MLP_RATIO, stem)}"
    )
    crop = [int(want["h"]), int(want["w"])]
    assert bb["img_size"] in (crop[0], crop), f"{path}: img_size {bb['img_size']}, the name says {crop}"
    train = cfg["train_dataset"]
    crops = [t["crop_size"] for t in train["transforms"] if t["type"] == "RandomPaddingCrop"]
    assert crops == [crop], f"{path}: training crops {crops}, the name says {crop}"
    n_cls = manager.DATASETS[train["type"]].NUM_CLASSES
    assert n_cls == DATASETS[want["dataset"]], f"{path}: {train['type']} has {n_cls} classes"
    if want["decoder"] == "linear":
        assert dec == {"name": "linear"}, f"{path}: linear decoder takes no other keys, got {dec}"
    else:
        got = (dec["name"], dec["n_layers"], dec["d_model"], dec["n_heads"], dec["mlp_ratio"])
        assert got == ("mask_transformer", MASK_DECODER_LAYERS, d, d // HEAD_DIM, MLP_RATIO), (
            f"{path}: mask decoder (name, layers, width, heads, mlp) = {got}"
        )

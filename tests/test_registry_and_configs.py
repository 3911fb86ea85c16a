"""Registration with PaddleSeg's managers, and every shipped config builds and runs."""
import glob
import os

import paddle
import pytest
from paddleseg.cvlibs import Config, SegBuilder, manager

import segmenter  # noqa: F401
from segmenter.models import Segmenter, SegmenterViT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yml"), recursive=True))
CONFIGS = [c for c in CONFIGS if os.sep + "_base_" + os.sep not in c]


def test_paddleseg_classes_untouched():
    from paddleseg.models import segmenter as ps_seg
    from paddleseg.models.backbones import vision_transformer as ps_vit
    assert manager.MODELS["LinearSegmenter"] is ps_seg.LinearSegmenter
    assert manager.MODELS["MaskSegmenter"] is ps_seg.MaskSegmenter
    assert manager.BACKBONES["VisionTransformer"] is ps_vit.VisionTransformer
    assert manager.MODELS["Segmenter"] is Segmenter
    assert manager.BACKBONES["SegmenterViT"] is SegmenterViT


def test_config_list_is_not_empty():
    assert len(CONFIGS) >= 8, f"found only {len(CONFIGS)} configs: {CONFIGS}"


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(c, ROOT) for c in CONFIGS])
def test_every_config_builds_and_runs(path):
    cfg = Config(path)
    model = SegBuilder(cfg).model
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.randn([1, 3, 48, 40]))[0]
    assert list(logits.shape) == [1, model.num_classes, 48, 40], f"{path}: got {list(logits.shape)}"

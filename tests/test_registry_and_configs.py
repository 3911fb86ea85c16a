"""Registration with PaddleSeg's managers, and every shipped config builds and runs."""

import glob
import os

import paddle
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder, manager
from paddleseg.cvlibs.config import parse_from_yaml

import segmenter  # noqa: F401
from segmenter.models import Segmenter, SegmenterViT
from tests.helpers import tiered

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


def shallow(path: str, tmp_path) -> str:
    """The config with a shallow backbone (depth 2, or one block per out_indices entry, taken in order) and narrow
    UPerNet heads (32 channels), everything else as the file says: the depth only repeats a block, and the
    published sizes are checked without building (tests/test_config_architecture.py,
    parity_tests/test_mmseg_configs.py). As shipped, the 25 builds took 8 min under load (ViT-L 96 s) and 2.2 GB."""
    dic = parse_from_yaml(path)
    bb = dic["model"]["backbone"]
    n = len(bb.get("out_indices") or [])
    bb["depth"] = max(2, n)
    if n:
        bb["out_indices"] = list(range(n))
    for head in ("decode_head", "auxiliary_head"):
        if dic["model"].get(head):
            dic["model"][head]["channels"] = 32
    out = tmp_path / os.path.basename(path)
    out.write_text(yaml.safe_dump(dic))
    return str(out)


# The fast tier builds the first config of each folder (segmenter, segmenter_mmseg, upernet_vit, ...); the suite all.
FAST_CONFIGS = [c for c in CONFIGS if c == min(d for d in CONFIGS if os.path.dirname(d) == os.path.dirname(c))]


@pytest.mark.parametrize("path", tiered(CONFIGS, FAST_CONFIGS), ids=[os.path.relpath(c, ROOT) for c in CONFIGS])
def test_every_config_builds_and_runs(path, tmp_path):
    cfg = Config(shallow(path, tmp_path))
    model = SegBuilder(cfg).model
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.randn([1, 3, 48, 40]))[0]
    assert list(logits.shape) == [1, model.num_classes, 48, 40], f"{path}: got {list(logits.shape)}"

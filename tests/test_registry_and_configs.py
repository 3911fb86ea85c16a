"""Registration with PaddleSeg's managers, and every shipped config builds and runs."""

import glob
import os

import paddle
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder, manager
from paddleseg.cvlibs.config import parse_from_yaml

import segmenter  # noqa: F401
from segmenter.engine.run import load_config
from segmenter.models import Segmenter, SegmenterViT
from tests.helpers import CONFIG_TWINS, tiered

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


def name(path: str) -> str:
    """configs/<family>/<name>.yml -> <family>/<name> (the keys of tests.helpers.CONFIG_TWINS)."""
    return os.path.relpath(path, os.path.join(ROOT, "configs"))[: -len(".yml")]


def test_config_twins_differ_only_in_iters():
    """Each config of CONFIG_TWINS resolves (bases, defaults: load_config, as the tools read it) to its twin's config
    but for `iters`, and the twin is not itself left out: the tests that build, train and evaluate configs run
    the twin in its place."""
    assert set(CONFIG_TWINS) <= {name(c) for c in CONFIGS}, sorted(set(CONFIG_TWINS) - {name(c) for c in CONFIGS})
    for row, twin in CONFIG_TWINS.items():
        a, b = (load_config(os.path.join(ROOT, "configs", r + ".yml")).dic for r in (row, twin))
        differ = sorted(k for k in set(a) | set(b) if k != "iters" and a.get(k) != b.get(k))
        assert not differ, f"{row} differs from its twin {twin} in {differ}: remove it from CONFIG_TWINS"
        assert twin not in CONFIG_TWINS, f"{row}'s twin {twin} is itself left out"


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


# The fast tier builds the first config of each folder (segmenter, segmenter_mmseg, upernet_vit, ...); the suite
# every config but the twins of another (tests.helpers.CONFIG_TWINS: they build the same model).
BUILT = [c for c in CONFIGS if name(c) not in CONFIG_TWINS]
FAST_CONFIGS = [c for c in BUILT if c == min(d for d in BUILT if os.path.dirname(d) == os.path.dirname(c))]


@pytest.mark.parametrize("path", tiered(BUILT, FAST_CONFIGS), ids=[os.path.relpath(c, ROOT) for c in BUILT])
def test_every_config_builds_and_runs(path, tmp_path):
    cfg = Config(shallow(path, tmp_path))
    model = SegBuilder(cfg).model
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.randn([1, 3, 48, 40]))[0]
    assert list(logits.shape) == [1, model.num_classes, 48, 40], f"{path}: got {list(logits.shape)}"

"""PaddleSeg 2.8's own Segmenter configs run unchanged (issue 27 item 17): its four ADE20K files, as PaddleSeg
ships them (tag v2.8.0, commit 2e51641a; `_base_` laid out as its configs/_base_/ade20k.yml), on stand-in ADE20K
data (tests/layouts.py). `tools/val.py --config <PaddleSeg's file> --model_path <URL of PaddleSeg's model.pdparams>`
evaluates; the model our tools build from the file gives the logits PaddleSeg's own classes give with the same
weights (the independent implementation: PaddleSeg's LinearSegmenter / MaskSegmenter built by PaddleSeg's builder
from the same file); the backbone's `pretrained:` .tar.gz archive loads as PaddleSeg's VisionTransformer loads it.
CPU time forces depth 1 (`--opts model.backbone.depth=1 model.h_depth=1`, PaddleSeg's names)."""

import io
import os
import tarfile

import numpy as np
import paddle
import pytest

import segmenter  # noqa: F401  (registers our components)
from segmenter.convert import paddleseg_config
from segmenter.parity import gap, run_paddle
from tests.helpers import tool_exit_code
from tests.url_server import Route, Server

# PaddleSeg v2.8.0's files, verbatim (git show v2.8.0:<path>).
PADDLESEG = {
    "configs/_base_/ade20k.yml": """\
batch_size: 4
iters: 80000

train_dataset:
  type: ADE20K
  dataset_root: data/ADEChallengeData2016/
  transforms:
    - type: ResizeStepScaling
      min_scale_factor: 0.5
      max_scale_factor: 2.0
      scale_step_size: 0.25
    - type: RandomPaddingCrop
      crop_size: [512, 512]
    - type: RandomHorizontalFlip
    - type: RandomDistort
      brightness_range: 0.4
      contrast_range: 0.4
      saturation_range: 0.4
    - type: Normalize
  mode: train

val_dataset:
  type: ADE20K
  dataset_root: data/ADEChallengeData2016/
  transforms:
    - type: Normalize
  mode: val

optimizer:
  type: SGD
  momentum: 0.9
  weight_decay: 4.0e-5

lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.01
  end_lr: 0
  power: 0.9

loss:
  types:
    - type: CrossEntropyLoss
  coef: [1]
""",
    "configs/segmenter/segmenter_vit_base_linear_ade20k_512x512_160k.yml": """\
_base_: '../_base_/ade20k.yml'

batch_size: 2
iters: 160000

model:
  type: LinearSegmenter
  backbone:
    type: VisionTransformer
    img_size: 512
    patch_size: 16
    embed_dim: 768
    depth: 12
    num_heads: 12
    mlp_ratio: 4
    qkv_bias: True
    drop_rate: 0.0
    drop_path_rate: 0.1
    final_norm: True
    pretrained: https://bj.bcebos.com/paddleseg/dygraph/pretrained_models/vit_base_patch16_384_augreg.tar.gz

val_dataset:
  transforms:
    - type: ResizeByShort
      short_size: 512
    - type: Normalize

optimizer:
  weight_decay: 0.0

lr_scheduler:
  learning_rate: 0.001
  end_lr: 1.0e-05

test_config:
  is_slide: True
  crop_size: [512, 512]
  stride: [512, 512]
""",
    "configs/segmenter/segmenter_vit_base_mask_ade20k_512x512_160k.yml": """\
_base_: './segmenter_vit_base_linear_ade20k_512x512_160k.yml'

model:
  type: MaskSegmenter
  h_embed_dim: 768
  h_depth: 2
  h_num_heads: 12
  h_mlp_ratio: 4
  h_drop_rate: 0.0
  h_drop_path_rate: 0.1
""",
    "configs/segmenter/segmenter_vit_small_linear_ade20k_512x512_160k.yml": """\
_base_: './segmenter_vit_base_linear_ade20k_512x512_160k.yml'

model:
  type: LinearSegmenter
  backbone:
    type: VisionTransformer
    img_size: 512
    patch_size: 16
    embed_dim: 384
    depth: 12
    num_heads: 6
    mlp_ratio: 4
    qkv_bias: True
    drop_rate: 0.0
    drop_path_rate: 0.1
    final_norm: True
    pretrained: https://bj.bcebos.com/paddleseg/dygraph/pretrained_models/vit_small_patch16_384_augreg.tar.gz
""",
    "configs/segmenter/segmenter_vit_small_mask_ade20k_512x512_160k.yml": """\
_base_: './segmenter_vit_small_linear_ade20k_512x512_160k.yml'

model:
  type: MaskSegmenter
  h_embed_dim: 384
  h_depth: 2
  h_num_heads: 6
  h_mlp_ratio: 4
  h_drop_rate: 0.0
  h_drop_path_rate: 0.1
""",
}
NAMES = [f"segmenter_vit_{s}_{d}_ade20k_512x512_160k" for s in ("small", "base") for d in ("linear", "mask")]
MODEL_URL = "/dygraph/ade20k/{}/model.pdparams"  # PaddleSeg's table: https://paddleseg.bj.bcebos.com + this
ARCHIVE_URL = "/paddleseg/dygraph/pretrained_models/{}.tar.gz"  # its configs: https://bj.bcebos.com + this
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPTH = ["model.backbone.depth=1", "model.h_depth=1"]  # PaddleSeg's own names for the depths


def _opts(name: str) -> list:
    return DEPTH if "_mask_" in name else DEPTH[:1]


@pytest.fixture(scope="module")
def paddleseg_tree(tmp_path_factory):
    """PaddleSeg's configs/ laid out as in its repository, stand-in ADE20K under data/, and a local server."""
    from tests import layouts

    root = tmp_path_factory.mktemp("paddleseg")
    for rel, text in PADDLESEG.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    layouts.ade20k(str(root / "data"), n_train=1, n_val=1)
    with Server() as server:
        yield {"root": root, "server": server}


def _paddleseg_model(root, name: str):
    """PaddleSeg's own model of its config file (PaddleSeg's Config and SegBuilder, our depth override), with random
    weights moved off their init. Its VisionTransformer.init_weight loads `pretrained` unconditionally (a download,
    and a crash on paddle 3 without one), so that one method is a no-op for the construction."""
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.models.backbones.vision_transformer import VisionTransformer

    mp = pytest.MonkeyPatch()
    mp.setattr(VisionTransformer, "init_weight", lambda self: None)
    try:
        paddle.seed(7)
        model = SegBuilder(Config(str(root / f"configs/segmenter/{name}.yml"), opts=_opts(name))).model
    finally:
        mp.undo()
    rng = np.random.default_rng(7)
    for p in model.parameters():
        p.set_value(p.numpy() + 0.02 * rng.standard_normal(p.shape).astype(np.float32))
    model.eval()
    return model


ARCHIVE = "vit_small_patch16_384_augreg"  # the pretrained: of PaddleSeg's ViT-S configs


def _archive(server: Server, tmp_path) -> str:
    """PaddleSeg's ViT-S ImageNet archive laid out as it publishes it (<name>.tar.gz holding <name>/model.pdparams,
    a VisionTransformer at 384 px: a 24 x 24 grid), depth 1, weights off their init; served; returns its path."""
    from paddleseg.models.backbones.vision_transformer import VisionTransformer

    mp = pytest.MonkeyPatch()
    mp.setattr(VisionTransformer, "init_weight", lambda self: None)
    try:
        paddle.seed(3)
        imagenet = VisionTransformer(img_size=384, embed_dim=384, depth=1, num_heads=6, qkv_bias=True, final_norm=True)
    finally:
        mp.undo()
    rng = np.random.default_rng(3)  # every weight off its init, so a key read from the wrong place shows
    member = tmp_path / ARCHIVE / "model.pdparams"
    member.parent.mkdir(exist_ok=True)
    paddle.save(
        {
            k: v + 0.02 * paddle.to_tensor(rng.standard_normal(v.shape).astype(np.float32))
            for k, v in imagenet.state_dict().items()
        },
        str(member),
    )
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as t:
        t.add(str(member), arcname=f"{ARCHIVE}/model.pdparams")
    route = ARCHIVE_URL.format(ARCHIVE)
    server.routes[route] = Route(tar.getvalue())
    return route


@pytest.mark.slow  # PaddleSeg's model, a val run and our model at 512 px: ~7 s a row on idle cores
@pytest.mark.parametrize("name", NAMES)
def test_val_of_a_paddleseg_config_with_its_model_url(paddleseg_tree, name, capsys, monkeypatch, tmp_path):
    """The published evaluation's command, on stand-in data: PaddleSeg's config file and its model URL."""
    from segmenter.engine.run import load_config, load_model

    root, server = paddleseg_tree["root"], paddleseg_tree["server"]
    monkeypatch.chdir(root)  # its dataset_root is relative: data/ADEChallengeData2016/
    monkeypatch.setenv("SEGMENTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEGMENTER_FAST_PATH", "0")  # dygraph: compiling the 512 px windows costs seconds
    ps = _paddleseg_model(root, name)
    buf = io.BytesIO()
    paddle.save(ps.state_dict(), buf)
    server.routes[MODEL_URL.format(name)] = Route(buf.getvalue())
    url, config = server.url(MODEL_URL.format(name)), f"configs/segmenter/{name}.yml"
    capsys.readouterr()
    code = tool_exit_code("val.py", ["--config", config, "--model_path", url, "--opts", *_opts(name)])
    out = capsys.readouterr()
    assert code == 0, f"tools/val.py on PaddleSeg's {name}: exit {code}\n{out.out[-1500:]}\n{out.err[-2500:]}"
    kind = "MaskSegmenter" if "_mask_" in name else "LinearSegmenter"
    note = next((ln for ln in out.out.splitlines() if ln.startswith(f"config {config}:")), "")
    assert f"PaddleSeg's {kind} + VisionTransformer built as our Segmenter + SegmenterViT" in note, out.out[-1500:]
    assert "is paddleseg's layout, converted on load" in out.out and "[EVAL] slice: 1 images" in out.out, out.out
    # the model val built, against PaddleSeg's own on a window of the slide evaluation (512 x 512)
    x = np.random.default_rng(0).standard_normal((1, 3, 512, 512)).astype(np.float32)
    ref = run_paddle(ps, x)
    ours = load_model(load_config(config, _opts(name)), url)
    g = gap(ref, run_paddle(ours, x))
    assert g.ok(allow_ties=True), f"{name}: PaddleSeg vs ours: {g}"
    # docs/conversion.md's table: our shipped config of that row takes PaddleSeg's model URL as well
    shipped = os.path.join(ROOT, "configs", "segmenter", f"{name}.yml")
    ours = load_model(
        load_config(shipped, [o.replace("model.h_depth", "model.decoder.n_layers") for o in _opts(name)]), url
    )
    g = gap(ref, run_paddle(ours, x))
    assert g.ok(allow_ties=True), f"{name}: PaddleSeg vs our shipped config: {g}"


@pytest.mark.slow  # a training iteration of ViT-S at 512 px
def test_train_on_a_paddleseg_config(paddleseg_tree, monkeypatch, tmp_path, capsys):
    """tools/train.py on PaddleSeg's file as it ships: its loss, transforms, dataset and the backbone's pretrained
    archive by URL (served locally), one iteration."""
    root, server = paddleseg_tree["root"], paddleseg_tree["server"]
    monkeypatch.chdir(root)
    monkeypatch.setenv("SEGMENTER_CACHE", str(tmp_path / "cache"))
    url = server.url(_archive(server, tmp_path))
    argv = ["--config", "configs/segmenter/segmenter_vit_small_linear_ade20k_512x512_160k.yml", "--iters", "1"]
    argv += ["--batch_size", "1", "--save_dir", str(tmp_path / "run"), "--save_interval", "1", "--opts"]
    argv += ["model.backbone.depth=1", f"model.backbone.pretrained={url}"]
    capsys.readouterr()
    code = tool_exit_code("train.py", argv)
    out = capsys.readouterr()
    assert code == 0 and (tmp_path / "run" / "iter_1" / "model.pdparams").is_file(), out.err[-2500:]
    assert f"backbone from {url}" in out.out, out.out[-1500:]


# PaddleSeg's own VisionTransformer.init_weight copies the loaded pos_embed with paddle.to_tensor: its warning only
@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")
def test_backbone_pretrained_archive_loads_as_paddleseg_loads_it(paddleseg_tree, monkeypatch, tmp_path):
    """`pretrained: https://…/vit_small_patch16_384_augreg.tar.gz` (a 24 x 24 grid at 384 px) in PaddleSeg's file:
    our SegmenterViT built from it equals PaddleSeg's VisionTransformer given the unpacked model.pdparams (which
    resizes pos_embed bicubic to the 32 x 32 grid of 512 px itself)."""
    from paddleseg.models.backbones.vision_transformer import VisionTransformer

    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config

    root, server = paddleseg_tree["root"], paddleseg_tree["server"]
    monkeypatch.chdir(root)
    monkeypatch.setenv("SEGMENTER_CACHE", str(tmp_path / "cache"))
    route = _archive(server, tmp_path)
    url, member = server.url(route), str(tmp_path / ARCHIVE / "model.pdparams")
    config = "configs/segmenter/segmenter_vit_small_linear_ade20k_512x512_160k.yml"
    ours = Builder(load_config(config, ["model.backbone.depth=1", f"model.backbone.pretrained={url}"])).model.backbone
    ref = VisionTransformer(  # PaddleSeg's own loading: its load_pretrained_model, then its bicubic resize
        img_size=512, embed_dim=384, depth=1, num_heads=6, qkv_bias=True, final_norm=True, pretrained=member
    )
    got, want = ours.state_dict(), ref.state_dict()
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
    for k in want:
        a, b = got[k].numpy(), want[k].numpy()
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5, f"{k}: max|diff|={np.abs(a - b).max():.3e}"


def test_test_spelling_is_read_as_test_config_or_refused(paddleseg_tree, monkeypatch, tmp_path):
    """PaddleSeg's newer `test:` for `test_config:`: read as test_config; both at once are refused by name."""
    from segmenter.engine.run import load_config

    root = paddleseg_tree["root"]
    monkeypatch.chdir(root)
    monkeypatch.setenv("SEGMENTER_CACHE", str(tmp_path / "cache"))
    base = root / "configs/segmenter/segmenter_vit_base_linear_ade20k_512x512_160k.yml"
    newer = root / "configs/segmenter/newer_test_key.yml"
    newer.write_text(base.read_text().replace("test_config:", "test:"))
    cfg = load_config(str(newer))
    assert cfg.test_config == {"is_slide": True, "crop_size": [512, 512], "stride": [512, 512]}, cfg.test_config
    both = root / "configs/segmenter/both_test_keys.yml"
    both.write_text(base.read_text() + "test:\n  is_slide: False\n")
    with pytest.raises(paddleseg_config.PaddleSegConfigError, match="both test: and test_config:"):
        load_config(str(both))


def test_vit_defaults_are_paddleseg_s():
    """The table the translation fills omitted keys from is the installed PaddleSeg's signature."""
    import inspect

    from paddleseg.models import MaskSegmenter
    from paddleseg.models.backbones.vision_transformer import VisionTransformer

    sig = {k: p.default for k, p in inspect.signature(VisionTransformer).parameters.items() if k != "args"}
    assert sig == paddleseg_config.VIT_DEFAULTS, set(sig.items()) ^ set(paddleseg_config.VIT_DEFAULTS.items())
    mask = {k: p.default for k, p in inspect.signature(MaskSegmenter).parameters.items() if k.startswith("h_")}
    mask = {k: None if d is inspect.Parameter.empty else d for k, d in mask.items()}
    assert mask == paddleseg_config.MASK_DEFAULTS, (mask, paddleseg_config.MASK_DEFAULTS)

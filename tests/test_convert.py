"""segmenter.convert: safety of loading, strictness, the transpose table, detection, --save-config, the CLI,
and that the PyTorch twin and the converters work without Paddle."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch

import segmenter.models as pm
import segmenter.pytorch as tm
from segmenter.convert import (
    ConversionError,
    UnsafeFileError,
    convert,
    expected_shapes,
    infer_arch,
    is_linear_weight,
    load_weights,
)
from segmenter.models.weights import read_state_dict
from segmenter.parity import build_pair, paddle_state, tiny_model_cfg

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _tiny_paddle_file(tmp_path, decoder="linear", name="model.pdparams"):
    paddle.seed(0)
    p, _ = build_pair(tiny_model_cfg("tiny", decoder))
    path = str(tmp_path / name)
    paddle.save(p.state_dict(), path)
    return path, paddle_state(p)


def test_malicious_pdparams_runs_nothing(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"backbone.cls_token": np.zeros((1, 1, 8), np.float32), "x": _Payload(str(marker))}, f, protocol=4)
    for load in (
        load_weights,
        read_state_dict,
        lambda p: pm.SegmenterViT(embed_dim=64, depth=1, num_heads=1, img_size=32, pretrained=p),
    ):
        with pytest.raises(UnsafeFileError, match="builtins.exec"):
            load(str(path))
        assert not marker.exists(), f"the payload ran while loading through {load}"


def test_malicious_pth_runs_nothing(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"encoder.cls_token": torch.zeros(1, 1, 8)}, "x": _Payload(str(marker))}, str(path))
    with pytest.raises(UnsafeFileError, match="weights_only"):
        load_weights(str(path))
    assert not marker.exists(), "the payload ran while loading the .pth"


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, cls=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UnsafeFileError, match="pickled"):
        load_weights(str(path))


@pytest.mark.parametrize("decoder", ["linear", "mask_transformer"])
def test_transpose_table_is_exactly_the_linear_layers(decoder):
    """LINEAR_WEIGHTS must list every nn.Linear weight and nothing else: a square matrix loaded without its
    transpose passes every shape check, so the table is checked against the module types themselves."""
    _, t = build_pair(tiny_model_cfg("tiny", decoder))
    linear = {f"{name}.weight" for name, m in t.named_modules() if isinstance(m, torch.nn.Linear)}
    listed = {k for k in t.state_dict() if is_linear_weight(k)}
    assert listed == linear, f"table misses {sorted(linear - listed)}, wrongly lists {sorted(listed - linear)}"


def published_layout(d: int, depth: int, n_cls: int, grid: int, decoder: str, distilled: bool):
    """Paddle-layout shapes of a Segmenter ViT/16, written out from the official key layout (REFERENCE.md), not from
    the code under test; and the keys that are torch Linear weights (stored [out, in] there)."""
    shapes = {
        "backbone.cls_token": (1, 1, d),
        "backbone.pos_embed": (1, (2 if distilled else 1) + grid, d),
        "backbone.patch_embed.proj.weight": (d, 3, 16, 16),
        "backbone.patch_embed.proj.bias": (d,),
        "backbone.norm.weight": (d,),
        "backbone.norm.bias": (d,),
    }
    if distilled:
        shapes["backbone.dist_token"] = (1, 1, d)
    block = {
        "norm1.weight": (d,),
        "norm1.bias": (d,),
        "attn.qkv.weight": (d, 3 * d),
        "attn.qkv.bias": (3 * d,),
        "attn.proj.weight": (d, d),
        "attn.proj.bias": (d,),
        "norm2.weight": (d,),
        "norm2.bias": (d,),
        "mlp.fc1.weight": (d, 4 * d),
        "mlp.fc1.bias": (4 * d,),
        "mlp.fc2.weight": (4 * d, d),
        "mlp.fc2.bias": (d,),
    }
    blocks = {f"backbone.blocks.{i}": block for i in range(depth)}
    if decoder == "linear":
        shapes.update({"decoder.head.weight": (d, n_cls), "decoder.head.bias": (n_cls,)})
    else:
        blocks.update({f"decoder.blocks.{j}": block for j in range(2)})
        shapes.update(
            {
                "decoder.cls_emb": (1, n_cls, d),
                "decoder.proj_dec.weight": (d, d),
                "decoder.proj_dec.bias": (d,),
                "decoder.proj_patch": (d, d),
                "decoder.proj_classes": (d, d),  # raw matrices, not Linear
                "decoder.decoder_norm.weight": (d,),
                "decoder.decoder_norm.bias": (d,),
                "decoder.mask_norm.weight": (n_cls,),
                "decoder.mask_norm.bias": (n_cls,),
            }
        )
    for prefix, b in blocks.items():
        shapes.update({f"{prefix}.{k}": v for k, v in b.items()})
    linear = {
        k
        for k in shapes
        if k.endswith(("qkv.weight", "attn.proj.weight", "fc1.weight", "fc2.weight", "head.weight", "proj_dec.weight"))
    }
    return shapes, linear


@pytest.mark.parametrize("decoder,distilled", [("linear", False), ("mask_transformer", True)])
def test_expected_shapes_match_both_twins(decoder, distilled):
    """ViT-S width, depth 2, 32 px (a 2x2 grid), 5 classes: the shapes the converter expects, the Paddle model's and
    the twin's all equal the published layout, and the architecture read back from the weights is the one built."""
    cfg = tiny_model_cfg("small", decoder)
    cfg["backbone"]["distilled"] = distilled
    want, linear = published_layout(384, 2, 5, 4, decoder, distilled)
    p, t = build_pair(cfg)
    state = paddle_state(p)
    arch = infer_arch(state, "<test>", 1e-5, "bilinear", {"num_heads": 6, "decoder_heads": 6})
    got = (arch.embed_dim, arch.depth, arch.patch_size, arch.num_classes, arch.distilled, arch.decoder["name"])
    assert got == (384, 2, 16, 5, distilled, decoder), (
        f"infer_arch read (width, depth, patch, classes, distilled, decoder) {got}"
    )
    for what, shapes in (
        ("expected_shapes", expected_shapes(arch)),
        ("paddle model", {k: tuple(v.shape) for k, v in state.items()}),
    ):
        wrong = {k: (shapes.get(k), want.get(k)) for k in set(want) | set(shapes) if shapes.get(k) != want.get(k)}
        assert not wrong, f"{what}: key -> (got, published) {wrong}"
    torch_shapes = {k: tuple(v.shape) for k, v in t.state_dict().items()}
    torch_want = {k: (s[::-1] if k in linear else s) for k, s in want.items()}
    wrong = {
        k: (torch_shapes.get(k), torch_want.get(k))
        for k in set(torch_want) | set(torch_shapes)
        if torch_shapes.get(k) != torch_want.get(k)
    }
    assert not wrong, f"torch twin: key -> (got, published) {wrong}"


def test_missing_key_is_an_error_naming_it_and_cli_writes_nothing(tmp_path):
    path, state = _tiny_paddle_file(tmp_path)
    del state["backbone.blocks.1.mlp.fc2.bias"]
    state["backbone.blocks.0.attn.extra"] = np.zeros(3, np.float32)
    bad = str(tmp_path / "bad.pdparams")
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, bad)
    with pytest.raises(ConversionError, match=r"backbone\.blocks\.0\.attn\.extra"):
        load_weights(bad)
    del state["backbone.blocks.0.attn.extra"]
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, bad)
    with pytest.raises(ConversionError, match=r"backbone\.blocks\.1\.mlp\.fc2\.bias"):
        load_weights(bad)
    dst, cfg = tmp_path / "out.pth", tmp_path / "out.yml"
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools/convert.py"), bad, str(dst), "--save-config", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 1, f"exit {run.returncode}: {run.stderr[-500:]}"
    assert "blocks.1.mlp.fc2.bias" in run.stderr and "Nothing was written" in run.stderr, run.stderr[-500:]
    assert not dst.exists() and not cfg.exists() and not list(tmp_path.glob("*.partial")), os.listdir(tmp_path)


def test_wrong_family_and_unknown_layout_are_errors(tmp_path):
    path, _ = _tiny_paddle_file(tmp_path)
    with pytest.raises(ConversionError, match="no rule maps"):
        load_weights(path, fmt="official")
    other = str(tmp_path / "other.pth")
    torch.save({"features.0.weight": torch.zeros(3)}, other)
    with pytest.raises(ConversionError, match="--from"):
        load_weights(other)


def test_class_count_must_match_the_base_dataset(tmp_path):
    path, _ = _tiny_paddle_file(tmp_path)  # 5 classes; the ADE20K base has 150
    with pytest.raises(ConversionError, match="150"), pytest.warns(UserWarning, match="so they are assumed"):
        convert(path, str(tmp_path / "o.pth"), save_config=str(tmp_path / "o.yml"))
    assert not (tmp_path / "o.pth").exists(), "weights written although the config was refused"


def test_backbone_weights_config_builds_from_another_directory(tmp_path, monkeypatch):
    paddle.seed(0)
    vit = pm.SegmenterViT(img_size=32, embed_dim=64, depth=2, num_heads=1)
    src = str(tmp_path / "vit.pdparams")
    paddle.save(vit.state_dict(), src)
    out = tmp_path / "converted"
    with pytest.warns(UserWarning, match=r"so they are assumed \(heads = width // 64"):  # 64 // 64: the 1 it has
        conv = convert(src, str(out / "vit.safetensors"), save_config=str(out / "seg.yml"))
    assert conv.arch.decoder is None and conv.arch.num_heads == 1, conv.arch
    monkeypatch.chdir("/")
    from paddleseg.cvlibs import Config, SegBuilder

    model = SegBuilder(Config(str(out / "seg.yml"))).model  # loads backbone.pretrained from the file
    for k, v in vit.state_dict().items():
        got = model.backbone.state_dict()[k].numpy()
        assert np.array_equal(got, v.numpy()), f"{k}: max|diff|={np.abs(got - v.numpy()).max():.3e}"
    twin = tm.build_model(str(out / "seg.yml"))
    assert twin.num_classes == 150 and twin.decoder_cfg["name"] == "linear", twin.decoder_cfg


def test_bare_paddle_vit_with_imagenet_head_loads_as_backbone(tmp_path):
    """PaddleSeg's ImageNet backbone files: a bare ViT state dict, classifier included."""
    paddle.seed(0)
    vit = pm.SegmenterViT(img_size=32, embed_dim=64, depth=1, num_heads=1)
    state = dict(vit.state_dict())
    state["head.weight"], state["head.bias"] = paddle.randn([64, 1000]), paddle.zeros([1000])
    path = str(tmp_path / "vit_imagenet.pdparams")
    paddle.save(state, path)
    conv = load_weights(path)
    assert conv.fmt == "paddle" and sorted(conv.dropped) == ["head.bias", "head.weight"], (conv.fmt, conv.dropped)
    other = pm.SegmenterViT(img_size=48, embed_dim=64, depth=1, num_heads=1, pretrained=path)  # pos_embed resampled
    key = "blocks.0.attn.qkv.weight"
    got, want = other.state_dict()[key].numpy(), vit.state_dict()[key].numpy()
    assert np.array_equal(got, want), f"max|diff|={np.abs(got - want).max():.3e}"


def test_twin_and_converters_work_without_paddle(tmp_path):
    path, _ = _tiny_paddle_file(tmp_path)
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('paddle', 'paddleseg'):
            raise ModuleNotFoundError(f'No module named {{name!r}} (blocked by the test)', name=name)
sys.meta_path.insert(0, Block())
import torch
import segmenter.pytorch as tm
from segmenter.convert import convert
convert({path!r}, {str(tmp_path / "m.pth")!r})
m = tm.build_model({str(ROOT / "configs/segmenter/segmenter_vit_small_linear_ade20k_512x512_160k.yml")!r})
b = tm.SegmenterViT(img_size=32, embed_dim=192, depth=2, num_heads=3, pretrained={path!r})
print(sorted(k for k in sys.modules if k.split('.')[0] in ('paddle', 'paddleseg')))
"""
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]", f"Paddle modules were imported: {run.stdout}"


BASE_WITH_MODEL = """
batch_size: 2
iters: 2
optimizer: {{type: SGD, momentum: 0.9}}
lr_scheduler: {{type: PolynomialDecay, learning_rate: 0.01, end_lr: 0.0, power: 0.9}}
loss: {{types: [{{type: CrossEntropyLoss}}], coef: [1]}}
train_dataset: {{type: Dataset, dataset_root: {root}, train_path: {root}/train.txt, num_classes: 3, mode: train,
                 transforms: [{{type: Normalize}}]}}
val_dataset: {{type: Dataset, dataset_root: {root}, val_path: {root}/val.txt, num_classes: 3, mode: val,
               transforms: [{{type: Normalize}}]}}
model:
  type: Segmenter
  num_classes: 3
  backbone: {{type: SegmenterViT, img_size: 32, patch_size: 8, embed_dim: 64, depth: 2, num_heads: 4, mlp_ratio: 2,
             qkv_bias: True, norm_eps: 1.0e-06, pos_embed_interp: bilinear, pretrained: null}}
  decoder: {{name: mask_transformer, n_layers: 1, d_model: 64, n_heads: 4, mlp_ratio: 2, qkv_bias: True,
            norm_eps: 1.0e-06}}
"""


def test_convert_takes_what_weights_cannot_tell_from_the_base_config_model(tmp_path):
    """Our .pdparams copied away from its checkpoint folder: the config written with --base-config (the config it
    was trained from, 4 heads and eps 1e-6 where the guesses would be 1 and 1e-5) builds the same model."""
    from paddleseg.cvlibs import Config, SegBuilder

    from segmenter.engine.run import load_config
    from tests import layouts

    root = layouts.file_list(str(tmp_path))
    base = tmp_path / "my_config.yml"
    base.write_text(BASE_WITH_MODEL.format(root=root))
    paddle.seed(0)
    model = SegBuilder(load_config(str(base))).model
    src = tmp_path / "copied_away" / "model.pdparams"
    src.parent.mkdir()
    paddle.save(model.state_dict(), str(src))
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "convert.py"),
            str(src),
            str(out / "m.pdparams"),
            "--save-config",
            str(out / "m.yml"),
            "--base-config",
            str(base),
        ],
        cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "assumed" not in r.stderr, f"exit {r.returncode}: {r.stderr[-1500:]}"
    twin = SegBuilder(Config(str(out / "m.yml"))).model  # loads model.pretrained, the converted weights
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(1, 3, 40, 56)).astype(np.float32))
    model.eval(), twin.eval()
    diff = float(np.abs(twin(x)[0].numpy() - model(x)[0].numpy()).max())
    assert diff < 1e-5, f"the written config builds another model: max|logits diff|={diff:.3e}\n{r.stderr[-800:]}"


def test_convert_warns_when_nothing_states_the_heads(tmp_path):
    path, _ = _tiny_paddle_file(tmp_path)
    base = tmp_path / "data.yml"  # a dataset section only: nothing says the heads or eps
    base.write_text("train_dataset: {type: Dataset, dataset_root: ., train_path: t.txt, num_classes: 5}\n")
    with pytest.warns(UserWarning, match=r"states \['num_heads', 'norm_eps', 'pos_embed_interp'\]"):
        convert(path, str(tmp_path / "o.pdparams"), save_config=str(tmp_path / "o.yml"), base_config=str(base))

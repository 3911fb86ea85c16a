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
from segmenter.convert import (ConversionError, UnsafeFileError, convert, expected_shapes, infer_arch,
                               is_linear_weight, load_weights)
from segmenter.convert.parity import paddle_state, tiny_model_cfg, build_pair
from segmenter.models.weights import read_state_dict

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
    for load in (load_weights, read_state_dict, lambda p: pm.SegmenterViT(embed_dim=64, depth=1, num_heads=1,
                                                                           img_size=32, pretrained=p)):
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


@pytest.mark.parametrize("decoder,distilled", [("linear", False), ("mask_transformer", True)])
def test_expected_shapes_match_both_twins(decoder, distilled):
    cfg = tiny_model_cfg("small", decoder)
    cfg["backbone"]["distilled"] = distilled
    p, t = build_pair(cfg)
    state = paddle_state(p)
    arch = infer_arch(state, "<test>", 1e-5, "bilinear", {"num_heads": 6, "decoder_heads": 6})
    want = expected_shapes(arch)
    assert want == {k: tuple(v.shape) for k, v in state.items()}, \
        f"differs on {sorted(set(want) ^ set(state))} or shapes"
    torch_shapes = {k: tuple(v.shape) for k, v in t.state_dict().items()}
    assert {k: (s[::-1] if is_linear_weight(k) else s) for k, s in want.items()} == torch_shapes


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
    run = subprocess.run([sys.executable, str(ROOT / "tools/convert.py"), bad, str(dst), "--save-config", str(cfg)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
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
    with pytest.raises(ConversionError, match="150"):
        convert(path, str(tmp_path / "o.pth"), save_config=str(tmp_path / "o.yml"))
    assert not (tmp_path / "o.pth").exists(), "weights written although the config was refused"


def test_backbone_weights_config_builds_from_another_directory(tmp_path, monkeypatch):
    paddle.seed(0)
    vit = pm.SegmenterViT(img_size=32, embed_dim=64, depth=2, num_heads=1)
    src = str(tmp_path / "vit.pdparams")
    paddle.save(vit.state_dict(), src)
    out = tmp_path / "converted"
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
    got, want = other.state_dict()["blocks.0.attn.qkv.weight"].numpy(), vit.state_dict()["blocks.0.attn.qkv.weight"].numpy()
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
convert({path!r}, {str(tmp_path / 'm.pth')!r})
m = tm.build_model({str(ROOT / 'configs/segmenter/segmenter_vit_small_linear_ade20k_512x512_160k.yml')!r})
b = tm.SegmenterViT(img_size=32, embed_dim=192, depth=2, num_heads=3, pretrained={path!r})
print(sorted(k for k in sys.modules if k.split('.')[0] in ('paddle', 'paddleseg')))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]", f"Paddle modules were imported: {run.stdout}"

"""tools/convert.py on MMSeg and mmpretrain layouts: the written config builds the exact model, and files it
cannot convert completely are refused with the keys named and nothing written (no MMSeg install needed: the
files are written in MMSeg's layout from our twin by the TO_MMSEG tables, which parity_tests check against MMSeg;
the mmpretrain layer-scale file by a small inverse table here, checked against mmpretrain in parity_tests)."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
import torch
from paddleseg.cvlibs import Config, SegBuilder

import segmenter.pytorch as tm
from segmenter.convert import load_weights
from segmenter.convert.core import Converted, to_mmseg
from segmenter.convert.files import write_torch_checkpoint
from segmenter.parity import build_pair, torch_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_UPERNET = {
    "type": "UPerNetViT",
    "num_classes": 150,
    "backbone": {
        "type": "SegmenterViT",
        "img_size": 32,
        "embed_dim": 64,
        "depth": 4,
        "num_heads": 1,
        "norm_eps": 1e-6,
        "pos_embed_interp": "bicubic",
        "patch_bias": False,
        "final_norm": False,
        "out_indices": [0, 1, 2, 3],
    },
    "neck": {"scales": [4, 2, 1, 0.5]},
    "decode_head": {"channels": 16, "pool_scales": [1, 2, 3, 6], "dropout": 0.1},
    "auxiliary_head": {"in_index": -1, "channels": 8, "num_convs": 1, "dropout": 0.1},
}


def _convert_main():
    spec = importlib.util.spec_from_file_location("convert_tool", os.path.join(ROOT, "tools", "convert.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def refused(capsys, *args: str) -> str:
    """Run tools/convert.py in-process (a subprocess pays Paddle's import each time); its stderr on exit 1."""
    mod = _convert_main()
    rc = mod.main(mod.parse_args(list(args)))
    err = capsys.readouterr().err
    assert rc == 1, f"exit {rc}: {err[-2000:]}"
    return err


def tool(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "convert.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def mmseg_file(tmp_path_factory):
    """A tiny ViT UPerNet (MLN, aux) in MMSeg's checkpoint layout, with its twin."""
    torch.manual_seed(0)
    _, twin = build_pair(TINY_UPERNET)
    with torch.no_grad():
        for t in twin.state_dict().values():
            if t.is_floating_point():
                t.add_(0.05 * torch.randn(t.shape))
    arch = load_weights.__globals__["infer_arch"](torch_state(twin), "twin", 1e-6, "bicubic", {"num_heads": 1})
    path = str(tmp_path_factory.mktemp("mm") / "upernet_mmseg.pth")
    write_torch_checkpoint(to_mmseg(Converted(torch_state(twin), arch, "torch", "twin")), path, {})
    return path, twin


def test_cli_writes_a_config_that_builds_the_exact_model(mmseg_file, tmp_path):
    path, twin = mmseg_file
    out, cfg = str(tmp_path / "m.pdparams"), str(tmp_path / "m.yml")
    r = tool(path, out, "--save-config", cfg, "--num-heads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (
        "(mmseg)" in r.stdout and "UPerHead + MultiLevelNeck (scales [4, 2, 1, 0.5]) + FCN aux (map -1)" in r.stdout
    ), r.stdout
    model = SegBuilder(Config(cfg)).model  # loads m.pdparams strictly
    model.eval()
    x = np.random.RandomState(0).randn(1, 3, 40, 56).astype(np.float32)
    twin.eval()
    with torch.no_grad():
        want = twin(torch.from_numpy(x))[0].numpy()
    got = model(paddle.to_tensor(x))[0].numpy()
    assert np.abs(got - want).max() <= 1e-5, f"max|diff|={np.abs(got - want).max():.2e}"


def test_unknown_mmseg_key_is_refused_and_nothing_written(mmseg_file, tmp_path, capsys):
    state = torch.load(mmseg_file[0], weights_only=True)
    state["state_dict"]["decode_head.extra_conv.weight"] = torch.zeros(2, 2)
    src, dst = str(tmp_path / "bad.pth"), str(tmp_path / "bad.pdparams")
    torch.save(state, src)
    err = refused(capsys, src, dst)
    assert "decode_head.extra_conv.weight" in err and "Nothing was written" in err, err
    assert not os.path.exists(dst)


def test_mis_shaped_mmseg_key_is_refused_and_nothing_written(mmseg_file, tmp_path, capsys):
    state = torch.load(mmseg_file[0], weights_only=True)
    key = "decode_head.fpn_bottleneck.conv.weight"
    state["state_dict"][key] = state["state_dict"][key][:, :-1]
    src, dst = str(tmp_path / "bad.pth"), str(tmp_path / "bad.pdparams")
    torch.save(state, src)
    err = refused(capsys, src, dst)
    assert "shape mismatch" in err and "decode_head.fpn_bottleneck.conv.weight" in err, err
    assert not os.path.exists(dst)


# Our twin's backbone keys -> mmpretrain's VisionTransformer keys (the inverse of keymaps.MMPRETRAIN, written out
# here so the test does not check the table against itself).
TO_MMPRETRAIN = [
    (r"patch_embed\.proj\.(.*)", r"patch_embed.projection.\1"),
    (r"norm\.(.*)", r"ln1.\1"),
    (r"blocks\.(\d+)\.norm1\.(.*)", r"layers.\1.ln1.\2"),
    (r"blocks\.(\d+)\.norm2\.(.*)", r"layers.\1.ln2.\2"),
    (r"blocks\.(\d+)\.attn\.(.*)", r"layers.\1.attn.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(.*)", r"layers.\1.ffn.layers.0.0.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(.*)", r"layers.\1.ffn.layers.1.\2"),
    (r"blocks\.(\d+)\.ls1\.gamma", r"layers.\1.attn.gamma1.weight"),
    (r"blocks\.(\d+)\.ls2\.gamma", r"layers.\1.ffn.gamma2.weight"),
    (r"(cls_token|pos_embed)", r"\1"),
]


@pytest.fixture(scope="module")
def layer_scale_file(tmp_path_factory):
    """A 2-block twin ViT with LayerScale (gammas around 1, not the init value), saved in mmpretrain's layout."""
    import re

    torch.manual_seed(1)
    twin = tm.SegmenterViT(
        img_size=32,
        embed_dim=64,
        depth=2,
        num_heads=1,
        norm_eps=1e-6,
        pos_embed_interp="bicubic",
        layer_scale_init=1e-5,
    )
    state = {}
    with torch.no_grad():
        for k, t in twin.state_dict().items():
            t.copy_(
                1.0 + 0.2 * torch.randn(t.shape)
                if k.endswith((".gamma", "norm1.weight", "norm2.weight"))
                else t + 0.05 * torch.randn(t.shape)
            )
            new = next(re.sub(p, r, k) for p, r in TO_MMPRETRAIN if re.fullmatch(p, k))
            state["backbone." + new] = t.clone()
    assert sum(".gamma" in k for k in state) == 4, sorted(state)
    path = str(tmp_path_factory.mktemp("mmpre") / "vit_ls.pth")
    torch.save({"meta": {}, "state_dict": state}, path)
    return path, twin.eval()


def test_mmpretrain_layer_scale_converts_and_the_config_builds_it(layer_scale_file, tmp_path):
    """gamma1 / gamma2 become ls1 / ls2; the written config and model card rebuild the model with layer scale."""
    from segmenter.convert import convert

    path, twin = layer_scale_file
    out, cfg = str(tmp_path / "vit.pdparams"), str(tmp_path / "seg.yml")
    conv = convert(path, out, save_config=cfg, overrides={"num_heads": 1})
    assert conv.fmt == "mmpretrain" and conv.arch.layer_scale_init == 1e-5, (conv.fmt, conv.arch)
    with open(out + ".model.json") as f:
        assert '"layer_scale_init": 1e-05' in f.read()
    model = SegBuilder(Config(cfg)).model  # backbone.pretrained loads the converted file strictly
    model.eval()
    x = np.random.RandomState(0).randn(2, 3, 32, 48).astype(np.float32)
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    got = model.backbone(paddle.to_tensor(x)).numpy()
    d = float(np.abs(got - want).max())
    assert d <= 1e-5, f"config-built backbone vs the twin: max|diff|={d:.2e}"
    built = tm.build_model(cfg).eval()  # the twin from the same YAML, loading the same .pdparams
    with torch.no_grad():
        got = built.backbone(torch.from_numpy(x)).numpy()
    d = float(np.abs(got - want).max())
    assert d <= 1e-5, f"twin built from the config vs the twin: max|diff|={d:.2e}"
    assert load_weights(out).arch.layer_scale_init == 1e-5  # read back from the model card


def test_mis_shaped_layer_scale_is_refused_naming_the_key(layer_scale_file, tmp_path, capsys):
    state = torch.load(layer_scale_file[0], weights_only=True)
    key = "backbone.layers.1.ffn.gamma2.weight"
    state["state_dict"][key] = state["state_dict"][key][:-1]
    src, dst = str(tmp_path / "bad.pth"), str(tmp_path / "bad.pdparams")
    torch.save(state, src)
    err = refused(capsys, src, dst, "--num-heads", "1")
    assert "shape mismatch" in err and "backbone.blocks.1.ls2.gamma" in err, err
    assert not os.path.exists(dst)


def test_layer_scale_is_not_written_to_mmseg(layer_scale_file, tmp_path):
    """MMSeg's ViT has no layer scale: --to mmseg refuses instead of writing a file MMSeg cannot load."""
    from segmenter.convert import ConversionError

    conv = load_weights(layer_scale_file[0], overrides={"num_heads": 1})
    conv.arch.num_classes, conv.arch.decoder = 150, {"name": "linear"}
    conv.state.update(
        {"decoder.head.weight": np.zeros((64, 150), np.float32), "decoder.head.bias": np.zeros(150, np.float32)}
    )
    with pytest.raises(ConversionError, match="layer scale|LayerScale"):
        to_mmseg(conv)


def test_layer_scale_init_flag_reaches_the_written_config(layer_scale_file, tmp_path):
    """--layer-scale-init sets the value the config records (the weights cannot tell it); loading is unchanged."""
    import yaml

    mod = _convert_main()
    out, cfg = str(tmp_path / "vit.pdparams"), str(tmp_path / "seg.yml")
    rc = mod.main(
        mod.parse_args(
            [layer_scale_file[0], out, "--num-heads", "1", "--layer-scale-init", "1e-6", "--save-config", cfg]
        )
    )
    assert rc == 0
    with open(cfg) as f:
        assert yaml.safe_load(f)["model"]["backbone"]["layer_scale_init"] == 1e-6
    assert load_weights(out).arch.layer_scale_init == 1e-6  # and the model card says the same

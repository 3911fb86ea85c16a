"""Paddle -> PyTorch -> Paddle and through .safetensors: every array comes back bit-identical."""

import numpy as np
import paddle
import pytest
import torch

from segmenter.convert import convert, load_weights
from segmenter.models.weights import load_pretrained as load_paddle
from segmenter.parity import build_pair, paddle_state, tiny_model_cfg, torch_state
from segmenter.pytorch.weights import load_pretrained as load_torch


def _identical(a, b, what):
    assert set(a) == set(b), f"{what}: key sets differ: {sorted(set(a) ^ set(b))[:10]}"
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, (
            f"{what}: {k} {a[k].shape}/{a[k].dtype} vs {b[k].shape}/{b[k].dtype}"
        )
        n = int((a[k] != b[k]).sum())
        assert n == 0, f"{what}: {k} differs in {n} elements (max|diff|={np.abs(a[k] - b[k]).max():.3e})"


@pytest.mark.parametrize("decoder", ["linear", "mask_transformer"])
def test_paddle_torch_paddle_and_safetensors_bit_identical(tmp_path, decoder):
    paddle.seed(3)
    p, t = build_pair(tiny_model_cfg("tiny", decoder))
    src = str(tmp_path / "model.pdparams")
    paddle.save(p.state_dict(), src)  # written by Paddle itself
    original = paddle_state(p)

    convert(src, str(tmp_path / "a.pth"))
    convert(str(tmp_path / "a.pth"), str(tmp_path / "b.pdparams"))
    convert(str(tmp_path / "b.pdparams"), str(tmp_path / "c.safetensors"))
    convert(str(tmp_path / "c.safetensors"), str(tmp_path / "d.pdparams"))
    convert(str(tmp_path / "c.safetensors"), str(tmp_path / "e.pth"))
    for name in ("b.pdparams", "d.pdparams"):
        _identical(
            original,
            {
                k: np.asarray(v)
                for k, v in paddle.load(str(tmp_path / name)).items()
                if isinstance(v, np.ndarray) or hasattr(v, "shape")
            },
            f"paddle.load({name})",
        )
    for name in ("a.pth", "e.pth"):  # the .pth holds exactly what the twin's own state dict would
        sd = torch.load(str(tmp_path / name), weights_only=True)
        load_torch(t, str(tmp_path / name))
        _identical({k: v.numpy() for k, v in t.state_dict().items()}, {k: v.numpy() for k, v in sd.items()}, name)
        _identical(original, torch_state(t), f"twin loaded from {name}")
    # each framework loads every format through its own loader to the same bits
    for name in ("a.pth", "b.pdparams", "c.safetensors"):
        paddle.seed(99)
        q, _ = build_pair(tiny_model_cfg("tiny", decoder))
        load_paddle(q, str(tmp_path / name))
        _identical(original, paddle_state(q), f"Paddle model loaded from {name}")
        _identical(original, load_weights(str(tmp_path / name)).state, f"load_weights({name})")


def test_layer_scale_round_trips_bit_identical_and_keeps_its_arch(tmp_path):
    """A backbone with LayerScale (gammas randomised, so ls1 and ls2 differ) through .pth and .safetensors: the
    arrays come back bit-identical, and each file records layer_scale_init (model card, safetensors metadata)."""
    cfg = tiny_model_cfg("tiny", "linear")
    cfg["backbone"]["layer_scale_init"] = 1e-6
    paddle.seed(4)
    p, _ = build_pair(cfg)
    for k, v in p.state_dict().items():
        if ".ls" in k:
            v.set_value(paddle.randn(v.shape))
    src = str(tmp_path / "model.pdparams")
    paddle.save(p.state_dict(), src)
    original = paddle_state(p)
    assert sum(".ls" in k for k in original) == 4, sorted(original)
    convert(src, str(tmp_path / "a.pth"), overrides={"layer_scale_init": 1e-6})
    convert(str(tmp_path / "a.pth"), str(tmp_path / "b.pdparams"))
    convert(str(tmp_path / "b.pdparams"), str(tmp_path / "c.safetensors"))
    convert(str(tmp_path / "c.safetensors"), str(tmp_path / "d.pdparams"))
    for name in ("a.pth", "b.pdparams", "c.safetensors", "d.pdparams"):
        conv = load_weights(str(tmp_path / name))
        assert conv.arch.layer_scale_init == 1e-6, f"{name}: {conv.arch}"
        _identical(original, conv.state, f"load_weights({name})")
    q, t = build_pair(cfg)
    load_paddle(q, str(tmp_path / "d.pdparams"))
    load_torch(t, str(tmp_path / "a.pth"))
    _identical(original, paddle_state(q), "Paddle model loaded from d.pdparams")
    _identical(original, torch_state(t), "twin loaded from a.pth")

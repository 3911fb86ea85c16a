"""Bad input fails with messages that name the key, the path or the expectation."""

import os

import numpy as np
import paddle
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder

import segmenter  # noqa: F401
from segmenter.models import Segmenter
from segmenter.models.weights import WeightsMismatchError
from tests.helpers import decoder_cfg, tiny_segmenter, tiny_vit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "configs", "segmenter", "segmenter_vit_small_mask_ade20k_512x512_160k.yml")


def _write_cfg(tmp_path, model_override):
    cfg = {"_base_": BASE, "model": model_override}
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_misspelt_backbone_key(tmp_path):
    path = _write_cfg(tmp_path, {"backbone": {"embed_dimm": 384}})
    with pytest.raises(Exception, match=r"SegmenterViT[\s\S]*embed_dimm"):
        SegBuilder(Config(path)).model


def test_misspelt_decoder_key(tmp_path):
    path = _write_cfg(tmp_path, {"decoder": {"n_layer": 2}})
    with pytest.raises(Exception, match=r"decoder \(mask_transformer\)[\s\S]*n_layer"):
        SegBuilder(Config(path)).model


def test_unknown_decoder_name():
    with pytest.raises(ValueError, match=r"decoder.name is 'mask'.*linear.*mask_transformer"):
        Segmenter(3, tiny_vit(), {"name": "mask"})


@pytest.mark.parametrize(
    "shape,dtype,pattern",
    [
        ([3, 32, 32], "float32", r"\[B, 3, H, W\].*\[3, 32, 32\]"),
        ([1, 1, 32, 32], "float32", r"\[B, 3, H, W\].*\[1, 1, 32, 32\]"),
        ([1, 3, 32, 32], "int64", r"float.*int64"),
    ],
)
def test_bad_input_tensor(shape, dtype, pattern):
    model = tiny_segmenter()
    with pytest.raises((ValueError, TypeError), match=pattern):
        model(paddle.zeros(shape, dtype=dtype))


def test_pretrained_path_missing(tmp_path):
    missing = str(tmp_path / "nope.pdparams")
    with pytest.raises(FileNotFoundError, match="nope.pdparams"):
        tiny_vit(pretrained=missing)


def test_pretrained_mismatch_names_keys(tmp_path):
    path = str(tmp_path / "vit.pdparams")
    state = tiny_vit(depth=2).state_dict()
    paddle.save(state, path)
    with pytest.raises(WeightsMismatchError, match=r"vit\.pdparams[\s\S]*not in the model \(12\): \['blocks\.1\.\*'\]"):
        tiny_vit(depth=1, pretrained=path)
    wide = {k: v for k, v in tiny_vit(preset="small", depth=2).state_dict().items()}
    paddle.save(wide, path)
    with pytest.raises(
        WeightsMismatchError, match=r"shape mismatch[\s\S]*cls_token: file \[1, 1, 384\] vs model \[1, 1, 192\]"
    ):
        tiny_vit(depth=2, pretrained=path)


def test_pretrained_roundtrip_and_pos_embed_resample(tmp_path):
    src = tiny_segmenter("mask_transformer", img_size=32)
    path = str(tmp_path / "model.pdparams")
    paddle.save(src.state_dict(), path)
    same = Segmenter(5, tiny_vit(img_size=32), decoder_cfg("mask_transformer", 192), pretrained=path)
    src.eval(), same.eval()
    x = paddle.randn([1, 3, 40, 40])
    with paddle.no_grad():
        d = np.abs(src(x)[0].numpy() - same(x)[0].numpy()).max()
    assert d == 0.0, f"reloaded model differs: max|diff|={d:.2e}"
    # a backbone at another size takes the file's backbone.* keys and resamples pos_embed (2x2 -> 4x4 grid)
    vit = tiny_vit(img_size=64, pretrained=path)
    assert list(vit.pos_embed.shape) == [1, 17, 192], f"got {list(vit.pos_embed.shape)}"

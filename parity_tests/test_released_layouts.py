"""Checkpoints in the layouts people hold, faked from the PyTorch twin by renaming keys the way each family
stores them: the official Segmenter checkpoint.pth (+ variant.yml) and Google's .npz; and files written by
real timm models (.pth/.bin/.safetensors). Converted (or given directly as `pretrained`), our Paddle model must
reproduce the twin, or timm's own forward for the timm and .npz files.

The .npz layout is written by hand (JAX is not installed) and checked with timm's own Google-checkpoint loader.
"""

import numpy as np
import paddle
import pytest
import torch
import yaml
from paddleseg.cvlibs import Config, SegBuilder
from safetensors.torch import save_file

import segmenter.models as pm
import segmenter.pytorch as tm
from parity_tests.google_npz import vit_arrays
from segmenter.convert import convert
from segmenter.parity import gap, run_paddle, run_torch

SIZES = ((1, 32, 32), (1, 40, 57), (2, 64, 48))


def _assert_close(ref: np.ndarray, got: np.ndarray, what: str) -> None:
    g = gap(ref, got)
    assert g.max_abs <= 1e-4 and g.rel_l2 <= 1e-5 and g.argmax_agree == 1.0, f"{what}: {g}"


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Move every parameter off its init value, so that LayerNorm and biases are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))


def _twin(decoder: str, distilled: bool = False) -> tm.Segmenter:
    """D=128 with 4 heads (not 128 // 64): only variant.yml can tell the converter the head count."""
    torch.manual_seed(0)
    bb = tm.SegmenterViT(img_size=32, patch_size=16, embed_dim=128, depth=2, num_heads=4, distilled=distilled)
    dec = (
        {"name": "linear"}
        if decoder == "linear"
        else {"name": "mask_transformer", "n_layers": 2, "d_model": 128, "n_heads": 2, "qkv_bias": True}
    )
    model = tm.Segmenter(num_classes=150, backbone=bb, decoder=dec)
    _perturb(model, 1)
    return model.eval()


@pytest.mark.parametrize(
    "decoder,distilled", [("linear", False), ("mask_transformer", False), ("mask_transformer", True)]
)
def test_official_checkpoint(tmp_path, decoder, distilled):
    twin = _twin(decoder, distilled)
    state = {
        ("encoder." + k[len("backbone.") :] if k.startswith("backbone.") else k): v
        for k, v in twin.state_dict().items()
    }
    state["encoder.head.weight"] = torch.randn(1000, 128)  # the ImageNet classifier, unused for segmentation
    state["encoder.head.bias"] = torch.randn(1000)
    if distilled:
        state["encoder.head_dist.weight"] = torch.randn(1000, 128)
        state["encoder.head_dist.bias"] = torch.randn(1000)
    ckpt_dir = tmp_path / "seg_tiny_mask"
    ckpt_dir.mkdir()
    torch.save(
        {
            "model": state,
            "n_cls": 150,
            "epoch": 63,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "momentum": 0.9, "params": [0]}]},
            "lr_scheduler": {"last_epoch": 63},
        },
        str(ckpt_dir / "checkpoint.pth"),
    )
    net = {
        "backbone": "vit_tiny_patch16_384",
        "d_model": 128,
        "n_heads": 4,
        "n_layers": 2,
        "image_size": [32, 32],
        "patch_size": 16,
        "distilled": distilled,
        "dropout": 0.0,
        "drop_path_rate": 0.1,
        "n_cls": 150,
        "normalization": "vit",
        "decoder": {"name": decoder, "n_layers": 2, "drop_path_rate": 0.0, "dropout": 0.1},
    }
    (ckpt_dir / "variant.yml").write_text(yaml.safe_dump({"net_kwargs": net}))

    conv = convert(
        str(ckpt_dir / "checkpoint.pth"), str(tmp_path / "ours.pdparams"), save_config=str(tmp_path / "ours.yml")
    )
    assert conv.fmt == "official", f"detected {conv.fmt}"
    assert sorted(conv.dropped) == sorted(k for k in state if ".head" in k and k.startswith("encoder.")), conv.dropped
    model = SegBuilder(Config(str(tmp_path / "ours.yml"))).model
    model.eval()
    for b, h, w in SIZES:
        x = np.random.default_rng(w).standard_normal((b, 3, h, w)).astype(np.float32)
        _assert_close(run_torch(twin, x), run_paddle(model, x), f"official {decoder} distilled={distilled} {b}x{h}x{w}")


def _timm_vit():
    """timm's own VisionTransformer (D=128, 4 heads, eps 1e-6), every weight moved off its init value; a
    patch-multiple input of any size (dynamic_img_size: timm resizes the pos-embed grid bicubic with antialias)."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(2)
    model = VisionTransformer(
        img_size=32, patch_size=16, embed_dim=128, depth=2, num_heads=4, num_classes=1000, dynamic_img_size=True
    )
    _perturb(model, 3)
    return model.eval()


def _backbone_pair(path: str, ref) -> None:
    """Our Paddle backbone given `path` directly as `pretrained`, as a config's backbone.pretrained would,
    against timm's forward_features (tokens after the final norm)."""
    p = pm.SegmenterViT(
        img_size=32,
        patch_size=16,
        embed_dim=128,
        depth=2,
        num_heads=4,
        norm_eps=1e-6,
        pos_embed_interp="bicubic_antialias",
        pretrained=path,
    )
    p.eval()
    for b, h, w in TIMM_SIZES:
        x = np.random.default_rng(h).standard_normal((b, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            want = ref.forward_features(torch.from_numpy(x)).numpy()
        with paddle.no_grad():
            got = p(paddle.to_tensor(x)).numpy()
        g = gap(want, got)
        assert got.shape == want.shape and g.max_abs <= 1e-5, f"{path} tokens {b}x{h}x{w}: {g}"


# timm floors a size that is not a patch multiple; we pad
TIMM_SIZES = ((1, 32, 32), (1, 48, 80), (2, 64, 48), (1, 16, 48))


@pytest.mark.parametrize("ext", [".pth", ".bin", ".safetensors"])
def test_timm_weights_as_backbone_pretrained(tmp_path, ext):
    """The file is the state dict of a real timm model (head included), saved as timm's users save it."""
    ref = _timm_vit()
    path = str(tmp_path / f"vit{ext}")
    if ext == ".safetensors":
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    else:
        torch.save(ref.state_dict(), path)
    _backbone_pair(path, ref)  # num_heads 4 comes from the config here; the file cannot say it
    conv = convert(path, str(tmp_path / "vit.pdparams"))
    assert conv.fmt == "timm" and conv.arch.norm_eps == 1e-6 and conv.arch.decoder is None, conv.arch


def _flax_npz(ref, path: str) -> None:
    """Google's ViT .npz layout (parity_tests/google_npz.py) of the 4-head test model."""
    np.savez(path, **vit_arrays({k: v.numpy() for k, v in ref.state_dict().items()}, heads=4))


def test_google_npz_as_backbone_pretrained_and_converted(tmp_path):
    """The hand-written .npz is first read by timm's own Google-checkpoint loader: the model it fills must equal
    the model it was written from, so the layout is Google's as timm reads it, not only as we read it."""
    from timm.models.vision_transformer import _load_weights

    ref = _timm_vit()
    path = str(tmp_path / "augreg.npz")
    _flax_npz(ref, path)
    read_back = _timm_vit()
    _perturb(read_back, 4)  # every weight differs from ref until timm's loader sets it
    _load_weights(read_back, path)
    for k, v in ref.state_dict().items():
        assert torch.equal(read_back.state_dict()[k], v), f"timm's npz loader reads {k} differently"
    _backbone_pair(path, ref)
    conv = convert(path, str(tmp_path / "vit.safetensors"))
    assert conv.fmt == "npz" and conv.arch.num_heads == 4, f"{conv.fmt}, heads {conv.arch.num_heads}"
    assert sorted(conv.dropped) == ["head/bias", "head/kernel"], conv.dropped
    _backbone_pair(str(tmp_path / "vit.safetensors"), ref)

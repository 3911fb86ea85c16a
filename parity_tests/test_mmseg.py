"""Converted MMSegmentation and mmpretrain checkpoints against MMSeg's and mmpretrain's own forward.

The reference models are built by MMSeg 1.2.2 / mmpretrain 1.2.0 from their registries (random weights,
LayerNorm and BatchNorm statistics away from 1/0), saved as MMEngine saves them, converted by our converter
(family recognised from the keys), loaded into our Paddle model and its PyTorch twin from the config the
converter writes, and compared with MMSeg's `EncoderDecoder.inference` (whole mode) logits.
"""

import numpy as np
import paddle
import pytest
import torch

pytest.importorskip("mmseg")
pytest.importorskip("mmpretrain")

import segmenter.models as pm  # noqa: E402
import segmenter.pytorch as tm  # noqa: E402
from parity_tests import mmlab  # noqa: E402
from segmenter.convert import load_weights, model_config, strip_prefix, to_layout  # noqa: E402
from segmenter.parity import build_pair, load_into_paddle, load_into_torch, run_paddle, run_torch  # noqa: E402

TOL = 1e-5  # fp32, max |diff| of logits
# Square at the training size, and non-square not a multiple of the patch (pos_embed resampled, MLN's odd grid).
SHAPES = ((2, 3, 32, 32), (2, 3, 40, 56))
UPERNET_ROWS = {"vit_mln": (True, False), "vit_ln_mln": (True, True), "deit_plain": (False, False)}


def _inputs(shape):
    return np.random.RandomState(sum(shape)).randn(*shape).astype(np.float32)


def _check_model(ref_model, path, tmp_path):
    conv = load_weights(path)
    assert conv.fmt == "mmseg", f"{path} recognised as {conv.fmt}"
    p, t = build_pair(model_config(conv.arch, None))
    load_into_paddle(p, conv.state)
    load_into_torch(t, conv.state)
    for shape in SHAPES:
        x = _inputs(shape)
        ref = mmlab.mmseg_logits(ref_model, torch.from_numpy(x)).numpy()
        for name, got in (("paddle", run_paddle(p, x)), ("torch twin", run_torch(t, x))):
            assert got.shape == ref.shape, f"{name} {shape}: {got.shape} vs MMSeg {ref.shape}"
            d = float(np.abs(got - ref).max())
            assert d <= TOL, f"{name} vs MMSeg at {shape}: max|diff|={d:.2e} > {TOL}"
    return conv


@pytest.mark.parametrize("head", ["mask", "fcn"])
def test_mmseg_segmenter_matches_mmseg(head, tmp_path):
    ref = mmlab.build_mmseg(mmlab.segmenter_cfg(head), seed=1)
    path = str(tmp_path / f"segmenter_{head}.pth")
    mmlab.save_as_mm(ref, path)
    conv = _check_model(ref, path, tmp_path)
    assert conv.arch.decoder["name"] == ("mask_transformer" if head == "mask" else "linear")
    assert conv.arch.logits_resize == "stretch" and not conv.arch.patch_bias


@pytest.mark.parametrize("row", sorted(UPERNET_ROWS))
def test_mmseg_upernet_matches_mmseg(row, tmp_path):
    mln, final_norm = UPERNET_ROWS[row]
    ref = mmlab.build_mmseg(mmlab.upernet_cfg(mln, final_norm), seed=2)
    path = str(tmp_path / f"upernet_{row}.pth")
    mmlab.save_as_mm(ref, path)
    conv = _check_model(ref, path, tmp_path)
    assert (conv.arch.neck is not None) == mln and conv.arch.final_norm == final_norm, conv.arch


def test_mmseg_upernet_auxiliary_head_matches_mmseg(tmp_path):
    """The FCN auxiliary head (training output) against MMSeg's auxiliary_head on the same neck maps."""
    ref = mmlab.build_mmseg(mmlab.upernet_cfg(True, False), seed=3)
    path = str(tmp_path / "upernet_aux.pth")
    mmlab.save_as_mm(ref, path)
    conv = load_weights(path)
    _, t = build_pair(model_config(conv.arch, None))
    load_into_torch(t, conv.state)
    x = torch.from_numpy(_inputs((2, 3, 40, 56)))
    with torch.no_grad():
        want = ref.auxiliary_head(ref.extract_feat(x))
        feats = t.neck(t.backbone(x))
        got = t.auxiliary_head(feats[t.auxiliary_head.in_index])
    d = float((got - want).abs().max())
    assert got.shape == want.shape and d <= TOL, f"auxiliary head: max|diff|={d:.2e}"


def test_mmpretrain_deit3_is_refused_naming_why(tmp_path):
    """mmpretrain's DeiT3 layer feeds ln1(x) to the MLP and leaves ln2 unused: refused, saying so."""
    from segmenter.convert import ConversionError

    ref = mmlab.build_mmpretrain_vit(depth=2, seed=4, deit3=True)
    path = str(tmp_path / "deit3_mmpretrain.pth")
    mmlab.save_as_mm(ref, path, prefix="backbone.")
    with pytest.raises(ConversionError, match=r"DeiT3.*ln2"):
        load_weights(path)


@pytest.mark.parametrize("layer_scale", [0.0, 1e-5])
def test_mmpretrain_vit_matches_mmpretrain(layer_scale, tmp_path):
    """mmpretrain ViT classification weights (backbone only): our tokens vs its `out_type='raw'` output; with
    layer_scale_init_value > 0 its `attn.gamma1` / `ffn.gamma2` (randomised around 1) become our ls1 / ls2."""
    ref = mmlab.build_mmpretrain_vit(depth=2, seed=4, layer_scale_init_value=layer_scale)
    assert ("layers.1.ffn.gamma2.weight" in ref.state_dict()) == (layer_scale > 0)
    path = str(tmp_path / "vit-b16_mmpretrain.pth")
    mmlab.save_as_mm(ref, path, prefix="backbone.")
    conv = load_weights(path)
    assert conv.fmt == "mmpretrain" and conv.arch.decoder is None, conv.fmt
    assert (conv.arch.layer_scale_init is not None) == (layer_scale > 0), conv.arch
    bb = conv.arch.backbone_config()
    bb.pop("type")
    p, t = pm.SegmenterViT(**bb), tm.SegmenterViT(**bb)
    p.eval()
    t.eval()
    p.set_state_dict({k: paddle.to_tensor(v) for k, v in strip_prefix(conv.state, "backbone.").items()})
    t.load_state_dict(
        {k: torch.from_numpy(v) for k, v in strip_prefix(to_layout(conv.state, "torch"), "backbone.").items()},
        strict=True,
    )
    for shape in SHAPES:
        x = _inputs(shape)
        with torch.no_grad():
            want = ref(torch.from_numpy(x))[0].numpy()
            got_t = t(torch.from_numpy(x)).numpy()
        got_p = p(paddle.to_tensor(x)).numpy()
        for name, got in (("paddle", got_p), ("torch twin", got_t)):
            d = float(np.abs(got - want).max())
            assert got.shape == want.shape and d <= TOL, f"{name} vs mmpretrain at {shape}: max|diff|={d:.2e}"


@pytest.mark.parametrize("which", ["mask", "fcn", "vit_ln_mln", "deit_plain"])
def test_roundtrip_back_to_mmseg_is_bit_identical(which, tmp_path):
    """MMSeg .pth -> our .pdparams -> (our .pth) -> MMSeg .pth: every tensor bit-identical, and MMSeg loads the
    file strictly and gives the same logits. BatchNorm batch counters are training state: written as 0."""
    from segmenter.convert import convert

    cfg = mmlab.segmenter_cfg(which) if which in ("mask", "fcn") else mmlab.upernet_cfg(*UPERNET_ROWS[which])
    ref = mmlab.build_mmseg(cfg, seed=5)
    src, mid, back = str(tmp_path / "mm.pth"), str(tmp_path / "ours.pdparams"), str(tmp_path / "back.pth")
    mmlab.save_as_mm(ref, src)
    convert(src, mid)
    convert(mid, str(tmp_path / "ours.pth"))
    convert(str(tmp_path / "ours.pth"), back, to="mmseg", overrides={"logits_resize": "stretch"})
    want = ref.state_dict()
    got = torch.load(back, weights_only=True)["state_dict"]
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))[:10]
    differ = [k for k in want if not torch.equal(got[k], want[k]) and not k.endswith("num_batches_tracked")]
    assert not differ, f"{len(differ)} tensors differ after the round trip: {differ[:10]}"
    again = mmlab.build_mmseg(cfg, seed=6)
    again.load_state_dict(got, strict=True)
    x = torch.from_numpy(_inputs((2, 3, 40, 56)))
    assert torch.equal(mmlab.mmseg_logits(again, x), mmlab.mmseg_logits(ref, x))


@pytest.mark.parametrize("with_cls_token,output_cls_token", [(True, True), (False, False)])
def test_vit_options_match_mmseg_backbone(with_cls_token, output_cls_token):
    """out_indices maps, with_cls_token (dropped after the positions) and output_cls_token against MMSeg's ViT."""
    from segmenter.convert.core import to_canonical

    cfg = dict(
        mmlab._vit(2, True, out_indices=(0, 1)), with_cls_token=with_cls_token, output_cls_token=output_cls_token
    )
    ref = mmlab.build_mmseg(cfg, seed=8)
    raw = {"backbone." + k: v.numpy() for k, v in ref.state_dict().items()}
    conv = to_canonical(raw, "mmseg", "mmseg backbone")
    bb = conv.arch.backbone_config()
    bb.pop("type")
    bb.update(out_indices=[0, 1], with_cls_token=with_cls_token, output_cls_token=output_cls_token)
    ours = pm.SegmenterViT(**bb)
    ours.set_state_dict({k: paddle.to_tensor(v) for k, v in strip_prefix(conv.state, "backbone.").items()})
    ours.eval()
    x = _inputs((2, 3, 40, 56))
    with torch.no_grad():
        want = ref(torch.from_numpy(x))
    got = ours(paddle.to_tensor(x))
    assert len(got) == len(want) == 2
    for i, (g, w) in enumerate(zip(got, want)):
        pairs = zip(g, w) if output_cls_token else [(g, w)]
        for a, b in pairs:
            d = float(np.abs(a.numpy() - b.numpy()).max())
            assert list(a.shape) == list(b.shape) and d <= TOL, f"output {i}: {list(a.shape)} max|diff|={d:.2e}"

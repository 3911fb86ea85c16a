"""MMSeg v0.13 / v0.14 UPerNet ViT checkpoints (`--from mmseg0`) against MMSeg 1.2.2's own modules.

What those releases trained (read in mmsegmentation 0.13.0 / 0.14.1 from PyPI, mmseg/models/backbones/vit.py and
necks/multilevel_neck.py, and in PR #520's configs at commit 4d77761): a timm-style ViT whose forward returns only
block 11 (`out_indices=11`), with a bias on the patch conv and no final norm; `MultiLevelNeck(in_channels=[D],
scales=[0.5, 1, 2, 4])`, which repeats its one input to the four scales, coarsest first; UPerHead on the four maps
and an FCN auxiliary head on map 0. MMSeg 1.2.2's VisionTransformer and MultiLevelNeck compute the same thing
when configured so (`parity_tests/mmlab.py: upernet_v0_cfg`); only their parameter names differ. The v0.x names
come from V0_NAMES below, a list written from the v0.13 source, independent of the converter's table.
"""

import gc

import numpy as np
import pytest
import torch

pytest.importorskip("mmseg")

from parity_tests import mmlab  # noqa: E402
from segmenter.convert import convert, load_weights, model_config  # noqa: E402
from segmenter.parity import build_model, build_pair, load_into_paddle, load_into_torch, run_paddle, run_torch  # noqa: E402

REL_TOL = 1e-5  # max |diff| of the logits over max |logit| of MMSeg's
# Multiples of the patch, where v0.13 and 1.2.2 compute alike (the remainder: test_v0_drops_the_patch_remainder_...).
SHAPES = ((2, 3, 32, 32), (2, 3, 48, 80))

# MMSeg 1.2.2 name -> v0.13 name, written from mmseg 0.13.0's vit.py (PatchEmbed.proj = Conv2d with bias;
# Block: norm1, attn (Attention: qkv = nn.Linear(dim, 3 dim), proj), norm2, mlp (Mlp: fc1, act, fc2);
# VisionTransformer: patch_embed, cls_token, pos_embed, blocks, norm when final_norm). 1.2.2's in_proj_weight
# stacks q, k, v as v0.13's qkv does (its forward reshapes qkv to (b, n, 3, heads, hd)).
V0_BACKBONE_NAMES = {
    "patch_embed.projection.weight": "patch_embed.proj.weight",
    "patch_embed.projection.bias": "patch_embed.proj.bias",
    "cls_token": "cls_token",
    "pos_embed": "pos_embed",
    "ln1.weight": "norm.weight",  # final norm (absent in these rows: final_norm=False)
    "ln1.bias": "norm.bias",
}
V0_BLOCK_NAMES = {  # under layers.{i}. (1.2.2) -> under blocks.{i}. (v0.13)
    "ln1.weight": "norm1.weight",
    "ln1.bias": "norm1.bias",
    "attn.attn.in_proj_weight": "attn.qkv.weight",
    "attn.attn.in_proj_bias": "attn.qkv.bias",
    "attn.attn.out_proj.weight": "attn.proj.weight",
    "attn.attn.out_proj.bias": "attn.proj.bias",
    "ln2.weight": "norm2.weight",
    "ln2.bias": "norm2.bias",
    "ffn.layers.0.0.weight": "mlp.fc1.weight",
    "ffn.layers.0.0.bias": "mlp.fc1.bias",
    "ffn.layers.1.weight": "mlp.fc2.weight",
    "ffn.layers.1.bias": "mlp.fc2.bias",
}


def v0_name(key: str) -> str:
    """A 1.2.2 key of the model -> the key v0.13 saves for the same tensor (neck and heads: unchanged)."""
    if not key.startswith("backbone."):
        return key
    rest = key[len("backbone.") :]
    if rest.startswith("layers."):
        _, i, tail = rest.split(".", 2)
        return f"backbone.blocks.{i}.{V0_BLOCK_NAMES[tail]}"
    return "backbone." + V0_BACKBONE_NAMES[rest]


def save_v0(model: torch.nn.Module, path: str) -> dict:
    """The model's weights under v0.x names, saved as mmcv 1.x's save_checkpoint does: {meta (with the dataset's
    CLASSES and PALETTE), state_dict, optimizer}."""
    state = {v0_name(k): v.clone() for k, v in model.state_dict().items()}
    assert len(state) == len(model.state_dict()), "V0 names collide"
    meta = {
        "mmseg_version": "0.13.0",
        "config": "upernet_vit-b16_512x512_80k_ade20k.py",
        "iter": 80000,
        "CLASSES": tuple(f"class{i}" for i in range(mmlab.CLASSES)),
        "PALETTE": [[i, i, i] for i in range(3)],
    }
    optimizer = {
        "state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2)}},
        "param_groups": [{"lr": 6e-5, "weight_decay": 0.01, "params": [0]}],
    }
    torch.save({"meta": meta, "state_dict": state, "optimizer": optimizer}, path)
    return state


def _inputs(shape):
    return np.random.RandomState(sum(shape)).randn(*shape).astype(np.float32)


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _reference(ref, shapes) -> dict:
    """MMSeg's logits for each input shape."""
    return {shape: mmlab.mmseg_logits(ref, torch.from_numpy(_inputs(shape))).numpy() for shape in shapes}


def _check(ref, path, shapes):
    """`ref`: the MMSeg model, or its logits per shape (`_reference`) when the caller has freed the model."""
    want_out = ref if isinstance(ref, dict) else _reference(ref, shapes)
    conv = load_weights(path)
    assert conv.fmt == "mmseg0", f"{path} recognised as {conv.fmt}"
    a = conv.arch
    depth = a.depth
    got = (
        a.out_indices,
        a.neck,
        a.auxiliary_head["in_index"],
        a.patch_bias,
        a.final_norm,
        a.norm_eps,
        a.pos_embed_interp,
        a.patch_remainder,
    )
    want = ([depth - 1], {"scales": [0.5, 1, 2, 4]}, 0, True, False, 1e-6, "bicubic", "drop")
    assert got == want, f"architecture read from the v0.x file {got} vs the release's {want}"
    gaps = []
    for name, framework, load, run in (
        ("paddle", "paddle", load_into_paddle, run_paddle),
        ("torch twin", "torch", load_into_torch, run_torch),
    ):  # one framework's model at a time: at full width each one is ~0.5 GB of weights
        with mmlab.no_init():  # the twin's init: its weights are all loaded (strictly) next
            model = build_model(model_config(a, None), framework)
        load(model, conv.state)
        for shape in shapes:
            out, ref_out = run(model, _inputs(shape)), want_out[shape]
            assert out.shape == ref_out.shape, f"{name} {shape}: {out.shape} vs MMSeg {ref_out.shape}"
            r = _rel(out, ref_out)
            assert r <= REL_TOL, f"{name} vs MMSeg at {shape}: max|diff|/max|ref|={r:.2e} > {REL_TOL}"
            gaps.append((name, shape, r))
        del model
        gc.collect()
    print("\n" + ", ".join(f"{n} {s}: max|diff|/max|ref| {r:.2e}" for n, s, r in gaps))
    return conv, gaps


def test_v0_names_cover_exactly_the_v013_modules():
    """The hand list against v0.13's module tree: per block the 12 tensors its Block holds, plus patch conv (with
    bias), tokens; nothing of 1.2.2's names left over."""
    ref = mmlab.build_mmseg(mmlab.upernet_v0_cfg(depth=2), seed=10)
    names = {v0_name(k) for k in ref.state_dict() if k.startswith("backbone.")}
    block = {
        "norm1.weight",
        "norm1.bias",
        "attn.qkv.weight",
        "attn.qkv.bias",
        "attn.proj.weight",
        "attn.proj.bias",
        "norm2.weight",
        "norm2.bias",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
    }
    want = {
        "backbone.patch_embed.proj.weight",
        "backbone.patch_embed.proj.bias",
        "backbone.cls_token",
        "backbone.pos_embed",
    } | {f"backbone.blocks.{i}.{n}" for i in range(2) for n in block}
    assert names == want, sorted(names ^ want)


def test_v0_upernet_matches_mmseg(tmp_path):
    ref = mmlab.build_mmseg(mmlab.upernet_v0_cfg(), seed=11)
    path = str(tmp_path / "upernet_vit_v0.pth")
    save_v0(ref, path)
    _check(ref, path, SHAPES)


def test_v0_drops_the_patch_remainder_as_v013(tmp_path):
    """Sides not a multiple of 16: v0.13's conv (no padding) and its reshape to H // 16 x W // 16 ignore the last
    H % 16 rows and W % 16 columns, and EncoderDecoder resizes the logits to the whole input. MMSeg 1.2.2 (which
    pads instead) is run on the input cut to whole patches, its logits resized to the whole input size."""
    ref = mmlab.build_mmseg(mmlab.upernet_v0_cfg(), seed=16)
    path = str(tmp_path / "upernet_vit_v0.pth")
    save_v0(ref, path)
    conv = load_weights(path)
    assert conv.arch.patch_remainder == "drop", conv.arch
    p, t = build_pair(model_config(conv.arch, None))
    load_into_paddle(p, conv.state)
    load_into_torch(t, conv.state)
    for shape in ((2, 3, 40, 56), (1, 3, 47, 33)):
        x = _inputs(shape)
        H, W = shape[2] - shape[2] % 16, shape[3] - shape[3] % 16
        metas = [dict(img_shape=tuple(shape[2:]), ori_shape=tuple(shape[2:]))] * shape[0]
        with torch.no_grad():
            want = ref.inference(torch.from_numpy(x[:, :, :H, :W].copy()), metas).numpy()
        for name, out in (("paddle", run_paddle(p, x)), ("torch twin", run_torch(t, x))):
            assert out.shape == want.shape, f"{name} {shape}: {out.shape} vs {want.shape}"
            r = _rel(out, want)
            assert r <= REL_TOL, f"{name} at {shape}: max|diff|/max|ref|={r:.2e} > {REL_TOL}"
    for _name, run, model in (("paddle", run_paddle, p), ("torch twin", run_torch, t)):  # no whole patch: one line
        with pytest.raises(ValueError, match=r"holds no whole 16x16 patch"):
            run(model, _inputs((1, 3, 12, 40)))


def test_v0_auxiliary_head_reads_the_coarsest_map(tmp_path):
    """The FCN auxiliary head on neck output 0 (scale 0.5) against MMSeg's auxiliary_head on the same maps."""
    ref = mmlab.build_mmseg(mmlab.upernet_v0_cfg(), seed=12)
    path = str(tmp_path / "upernet_vit_v0.pth")
    save_v0(ref, path)
    conv = load_weights(path)
    _, t = build_pair(model_config(conv.arch, None))
    load_into_torch(t, conv.state)
    x = torch.from_numpy(_inputs((2, 3, 48, 80)))
    with torch.no_grad():
        want = ref.auxiliary_head(ref.extract_feat(x))
        feats = t.neck(t.backbone(x))
        got = t.auxiliary_head(feats[t.auxiliary_head.in_index])
    assert got.shape == want.shape == (2, mmlab.CLASSES, 1, 2), (got.shape, want.shape)  # 3 x 5 grid at 0.5
    r = float((got - want).abs().max() / want.abs().max())
    assert r <= REL_TOL, f"auxiliary head: max|diff|/max|ref|={r:.2e}"


def test_v0_conversion_writes_the_release_architecture(tmp_path):
    """tools/convert's path: the written config and the card hold out_indices [last], scales [0.5, 1, 2, 4]
    and aux in_index 0; converting our file again (card read) gives the same architecture."""
    import yaml

    from segmenter.convert.files import read_model_card

    ref = mmlab.build_mmseg(mmlab.upernet_v0_cfg(), seed=13)
    src, dst, cfg = str(tmp_path / "v0.pth"), str(tmp_path / "ours.pdparams"), str(tmp_path / "ours.yml")
    save_v0(ref, src)
    conv = convert(src, dst, save_config=cfg)
    model = yaml.safe_load(open(cfg))["model"]
    got = (
        model["type"],
        model["backbone"]["out_indices"],
        model["neck"],
        model["auxiliary_head"]["in_index"],
        model["backbone"]["patch_bias"],
        model["backbone"]["final_norm"],
        model["backbone"]["patch_remainder"],
    )
    assert got == ("UPerNetViT", [3], {"scales": [0.5, 1, 2, 4]}, 0, True, False, "drop"), got
    card = read_model_card(dst)
    assert card["neck"] == {"scales": [0.5, 1, 2, 4]} and card["auxiliary_head"]["in_index"] == 0, card
    again = load_weights(dst)
    assert again.fmt == "paddle" and again.arch == conv.arch, (again.arch, conv.arch)
    back = str(tmp_path / "mm1.pth")  # to MMSeg 1.x's layout: loads strictly into 1.2.2's model so configured
    with pytest.warns(UserWarning, match="pads sides"):
        convert(dst, back, to="mmseg")
    again_mm = mmlab.build_mmseg(mmlab.upernet_v0_cfg(), seed=0)
    again_mm.load_state_dict(torch.load(back, weights_only=True)["state_dict"], strict=True)
    x = torch.from_numpy(_inputs((2, 3, 48, 80)))
    assert torch.equal(mmlab.mmseg_logits(again_mm, x), mmlab.mmseg_logits(ref, x)), "back in MMSeg 1.x: logits differ"


def test_ours_and_mmseg_1x_files_are_not_taken_for_v0(tmp_path):
    """Detection: MMSeg 1.x UPerNet (layers.*) stays `mmseg`; a v0.x file is `mmseg0` only by its own keys."""
    ref = mmlab.build_mmseg(mmlab.upernet_v0_cfg(), seed=14)
    path = str(tmp_path / "mm1.pth")
    mmlab.save_as_mm(ref, path)
    assert load_weights(path, overrides={"neck_scales": [0.5, 1, 2, 4]}).fmt == "mmseg"


@pytest.mark.slow
def test_v0_upernet_vit_b_full_width_matches_mmseg(tmp_path):
    """ViT-B/16 at full width and depth (768, 12 heads, 12 blocks, UPerHead 512, aux 256) built for 512x512, as
    released, and run on a 128x128 image (batch 1; the pos-embed resized from 32x32 to 8x8 as v0.13 does). At 512
    input Paddle's im2col for the 2048-channel 3x3 fpn_bottleneck alone takes 1.2 GB and the test process went past
    6 GB; the reference model is freed before ours are built for the same reason. The widths are what this test adds
    to the small ones above; the size only costs time (at 256: 4x the convolutions, the test ~15 s longer)."""
    ref = mmlab.build_mmseg(
        mmlab.upernet_v0_cfg(depth=12, width=768, heads=12, channels=512, aux_channels=256, img=512), seed=15
    )
    n_params = sum(
        v.numel()
        for k, v in ref.state_dict().items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    path = str(tmp_path / "upernet_vit-b16_v0.pth")
    save_v0(ref, path)
    shapes = [(1, 3, 128, 128)]
    want = _reference(ref, shapes)
    del ref
    gc.collect()
    conv, gaps = _check(want, path, shapes)
    ours = sum(int(np.prod(v.shape)) for k, v in conv.state.items() if not k.endswith(("_mean", "_variance")))
    assert ours == n_params, f"parameters: ours {ours} vs MMSeg {n_params}"
    print(
        f"\nViT-B v0 UPerNet: {n_params / 1e6:.2f} M parameters; " + ", ".join(f"{n} {s}: {r:.2e}" for n, s, r in gaps)
    )


def test_v0_drop_path_rate_is_mlp_dropout():
    """v0.13's VisionTransformer builds `Block(..., drop=dpr[i], attn_drop=attn_drop_rate, ...)` with no drop_path
    argument: each block's rate becomes its Mlp's dropout (after the GELU and after fc2) and DropPath stays an
    Identity. drop_path_mode: mlp_dropout builds that, in both twins; the default keeps stochastic depth."""
    import segmenter.models as pm
    import segmenter.pytorch as tm

    rates = np.linspace(0, 0.1, 4)
    for mode in ("mlp_dropout", "stochastic_depth"):
        for name, vit in (
            (
                "paddle",
                pm.SegmenterViT(
                    img_size=32, embed_dim=32, depth=4, num_heads=1, drop_path_rate=0.1, drop_path_mode=mode
                ),
            ),
            (
                "torch twin",
                tm.SegmenterViT(
                    img_size=32, embed_dim=32, depth=4, num_heads=1, drop_path_rate=0.1, drop_path_mode=mode
                ),
            ),
        ):
            mlp = [float(b.mlp.drop.p) for b in vit.blocks]
            path = [
                0.0 if type(b.drop_path).__name__ == "Identity" else float(b.drop_path.drop_prob) for b in vit.blocks
            ]
            proj = [float(b.attn.proj_drop.p) for b in vit.blocks]
            want = (list(rates), [0.0] * 4) if mode == "mlp_dropout" else ([0.0] * 4, list(rates))
            assert np.allclose(mlp, want[0]) and np.allclose(path, want[1]) and proj == [0.0] * 4, (
                f"{name} {mode}: mlp dropout {mlp}, drop path {path}, proj dropout {proj}"
            )

"""Files written by real timm models (timm's own VisionTransformer, state dicts as timm saves them, .pth and
.safetensors), converted by the `timm` family, against timm's own forward_features."""

import numpy as np
import paddle
import pytest
import torch

timm = pytest.importorskip("timm")

import segmenter.models as pm  # noqa: E402
from segmenter.convert import load_weights, strip_prefix  # noqa: E402

TOL = 1e-5


def _timm_vit(distilled: bool, seed: int):
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    cls = VisionTransformerDistilled if distilled else VisionTransformer
    torch.manual_seed(seed)
    m = cls(img_size=32, patch_size=16, embed_dim=128, depth=2, num_heads=2, num_classes=10)
    with torch.no_grad():
        for t in m.state_dict().values():
            t.add_(0.05 * torch.randn(t.shape))
    return m.eval()


@pytest.mark.parametrize("distilled,ext", [(False, ".pth"), (False, ".safetensors"), (True, ".pth")])
def test_timm_file_matches_timm_forward(distilled, ext, tmp_path):
    ref = _timm_vit(distilled, seed=7)
    path = str(tmp_path / f"vit{ext}")
    if ext == ".pth":
        torch.save(ref.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    conv = load_weights(path)
    assert conv.fmt == "timm" and conv.arch.distilled == distilled, (conv.fmt, conv.arch)
    bb = conv.arch.backbone_config()
    bb.pop("type")
    ours = pm.SegmenterViT(**bb)
    ours.set_state_dict({k: paddle.to_tensor(v) for k, v in strip_prefix(conv.state, "backbone.").items()})
    ours.eval()
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)  # timm's fixed img_size
    with torch.no_grad():
        want = ref.forward_features(torch.from_numpy(x)).numpy()
    got = ours(paddle.to_tensor(x)).numpy()
    d = float(np.abs(got - want).max())
    what = f"ours vs timm {'DeiT' if distilled else 'ViT'} {ext}"
    assert got.shape == want.shape and d <= TOL, f"{what}: max|diff|={d:.2e}"


@pytest.mark.parametrize("model", ["vit_init_values", "deit3_small_patch16_224"])
def test_timm_layer_scale_matches_timm_forward(model, tmp_path):
    """timm ViTs with LayerScale (`blocks.i.ls{1,2}.gamma`, randomised around 1) at a non-square training size: ours
    and the twin vs timm's forward_features, and our .pth is timm's state dict under `backbone.`, bit for bit.
    DeiT-III (timm's own config, at depth 2 and width 64) also has no position slot for the class token."""
    import segmenter.pytorch as tm
    from segmenter.convert import convert, to_layout

    torch.manual_seed(11)
    args = dict(img_size=(32, 48), embed_dim=64, depth=2, num_heads=1, num_classes=10)
    if model == "vit_init_values":
        from timm.models.vision_transformer import VisionTransformer

        ref = VisionTransformer(patch_size=16, init_values=1e-5, **args)
    else:
        ref = timm.create_model(model, pretrained=False, **args)
        assert ref.no_embed_class and ref.pos_embed.shape[1] == 6, ref.pos_embed.shape
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            t.copy_(
                1.0 + 0.2 * torch.randn(t.shape)
                if name.endswith((".gamma", "norm1.weight", "norm2.weight"))
                else t + 0.05 * torch.randn(t.shape)
            )
    ref.eval()
    path, ours_pth = str(tmp_path / "timm.pth"), str(tmp_path / "ours.pth")
    torch.save(ref.state_dict(), path)
    conv = convert(path, str(tmp_path / "ours.pdparams"), overrides={"img_size": [32, 48]})
    assert conv.fmt == "timm" and conv.arch.layer_scale_init is not None, (conv.fmt, conv.arch)
    bb = conv.arch.backbone_config()
    bb.pop("type")
    p, t = pm.SegmenterViT(**bb), tm.SegmenterViT(**bb)
    p.set_state_dict({k: paddle.to_tensor(v) for k, v in strip_prefix(conv.state, "backbone.").items()})
    t.load_state_dict(
        {k: torch.from_numpy(v) for k, v in strip_prefix(to_layout(conv.state, "torch"), "backbone.").items()},
        strict=True,
    )
    p.eval()
    t.eval()
    x = np.random.RandomState(1).randn(2, 3, 32, 48).astype(np.float32)
    with torch.no_grad():
        want = ref.forward_features(torch.from_numpy(x)).numpy()
        got_t = t(torch.from_numpy(x)).numpy()
    got_p = p(paddle.to_tensor(x)).numpy()
    for name, got in (("paddle", got_p), ("torch twin", got_t)):
        d = float(np.abs(got - want).max())
        assert got.shape == want.shape and d <= TOL, f"{name} vs timm {model}: max|diff|={d:.2e}"
    # The way back: timm's names are ours, so our .pth of it is timm's state dict (less the classifier), bit for bit;
    # DeiT-III's pos_embed gained a zero row for the class token.
    convert(str(tmp_path / "ours.pdparams"), ours_pth)
    back = strip_prefix(torch.load(ours_pth, weights_only=True), "backbone.")
    if model != "vit_init_values":
        assert not back["pos_embed"][:, 0].any(), "the class token's position row is not zero"
        back["pos_embed"] = back["pos_embed"][:, 1:]
    want_sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("head.")}
    assert sorted(back) == sorted(want_sd), sorted(set(back) ^ set(want_sd))
    differ = [k for k in want_sd if not torch.equal(back[k], want_sd[k])]
    assert not differ, f"{len(differ)} tensors differ after timm -> .pdparams -> .pth: {differ}"


def test_deit3_square_file_needs_no_img_size(tmp_path):
    """A DeiT-III pos_embed of g*g rows (no class-token slot) is read as a g x g grid without --img-size, and a
    ViT's g*g + 1 rows are left as they are."""
    torch.manual_seed(12)
    for name, rows in (("deit3_small_patch16_224", 4), ("vit_small_patch16_224", 5)):
        ref = timm.create_model(name, pretrained=False, img_size=32, embed_dim=64, depth=1, num_heads=1)
        path = str(tmp_path / f"{name}.pth")
        torch.save(ref.state_dict(), path)
        if rows == 4:  # the reading is said, with the flag that would read it otherwise
            with pytest.warns(UserWarning, match="read as timm's DeiT-III layout .* pass --img-size"):
                conv = load_weights(path)
        else:
            conv = load_weights(path)
        pos = conv.state["backbone.pos_embed"]
        assert tuple(ref.pos_embed.shape) == (1, rows, 64) and conv.arch.img_size == [32, 32], (name, conv.arch)
        assert pos.shape == (1, 5, 64) and np.array_equal(pos[:, -4:], ref.pos_embed.detach().numpy()[:, -4:]), name
        assert (rows == 5) or not pos[:, 0].any(), f"{name}: class-token position row {pos[0, 0, :4]}"


def test_vit_on_a_grid_whose_rows_make_a_square_is_not_taken_for_deit3(tmp_path):
    """A ViT with a class-token row on a 3x5 grid has 16 = 4*4 rows, as a DeiT-III 4x4 grid would. Without layer
    scale it is not DeiT-III: without --img-size the converter refuses (naming the flag) rather than guess, and
    with --img-size 80 48 (W H; img_size [48, 80] in the API) it matches timm's forward."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(13)
    ref = VisionTransformer(img_size=(48, 80), patch_size=16, embed_dim=64, depth=1, num_heads=1, num_classes=10)
    with torch.no_grad():
        for t in ref.state_dict().values():
            t.add_(0.05 * torch.randn(t.shape))
    ref.eval()
    path = str(tmp_path / "vit_3x5.pth")
    torch.save(ref.state_dict(), path)
    with pytest.raises(Exception, match="--img-size"):
        load_weights(path)
    conv = load_weights(path, overrides={"img_size": [48, 80]})
    assert np.array_equal(conv.state["backbone.pos_embed"], ref.pos_embed.detach().numpy())
    bb = conv.arch.backbone_config()
    bb.pop("type")
    ours = pm.SegmenterViT(**bb)
    ours.set_state_dict({k: paddle.to_tensor(v) for k, v in strip_prefix(conv.state, "backbone.").items()})
    ours.eval()
    x = np.random.RandomState(1).randn(2, 3, 48, 80).astype(np.float32)
    with torch.no_grad():
        want = ref.forward_features(torch.from_numpy(x)).numpy()
    d = float(np.abs(ours(paddle.to_tensor(x)).numpy() - want).max())
    assert d <= TOL, f"3x5 ViT: max|diff| {d:.2e}"


def test_recorded_pos_embed_interp_is_what_timm_does(tmp_path):
    """A timm file converted with a config: the pos-embed interpolation the config and the model card record,
    used by our model at another grid (4x4 -> 2x5: down in one axis, where antialiasing matters, up in the other),
    gives timm's own forward_features at that size (timm resamples the position table for dynamic_img_size)."""
    import yaml
    from timm.models.vision_transformer import VisionTransformer

    from segmenter.convert import convert
    from segmenter.convert.files import read_model_card

    torch.manual_seed(5)
    ref = VisionTransformer(
        img_size=64, patch_size=16, embed_dim=64, depth=1, num_heads=2, num_classes=0, dynamic_img_size=True
    )
    with torch.no_grad():
        for t in ref.state_dict().values():
            t.add_(0.05 * torch.randn(t.shape))
        ref.pos_embed.add_(torch.randn(ref.pos_embed.shape))  # a rough table, so the interpolations differ
    src, dst, cfg = str(tmp_path / "vit.pth"), str(tmp_path / "vit.pdparams"), str(tmp_path / "vit.yml")
    torch.save(ref.eval().state_dict(), src)
    convert(src, dst, overrides={"num_heads": 2}, save_config=cfg)  # heads: weights cannot tell
    with open(cfg) as f:
        bb = yaml.safe_load(f)["model"]["backbone"]
    card = read_model_card(dst)["backbone"]["pos_embed_interp"]
    assert bb["pos_embed_interp"] == card, f"config says {bb['pos_embed_interp']}, card says {card}"
    bb = {k: v for k, v in bb.items() if k not in ("type", "pretrained")}
    ours = pm.SegmenterViT(**bb)
    ours.set_state_dict({k: paddle.to_tensor(v) for k, v in strip_prefix(load_weights(dst).state, "backbone.").items()})
    ours.eval()
    x = np.random.RandomState(1).randn(1, 3, 32, 80).astype(np.float32)
    with torch.no_grad():
        want = ref.forward_features(torch.from_numpy(x)).numpy()
    got = ours(paddle.to_tensor(x)).numpy()
    d = float(np.abs(got - want).max())
    assert got.shape == want.shape and d <= TOL, f"recorded {card!r}: ours vs timm at 32x80, max|diff|={d:.2e}"

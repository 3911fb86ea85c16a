"""timm's hybrid ResNet + ViT models (vision_transformer_hybrid.py: R50+ViT-B/16, R50+ViT-L/32, R26+ViT-S/32 and
B/32, the Ti stem with 8x8 patches), real timm with random weights, against our SegmenterViT(stem_layers=...) in
Paddle and in the twin: files as timm saves them (.pth, .safetensors) and Google's R50+ViT .npz layout, converted
by the `timm` / `npz` families, forward_features compared at square and non-square sizes, parameters counted."""

import numpy as np
import paddle
import pytest
import torch

timm = pytest.importorskip("timm")

import segmenter.models as pm  # noqa: E402
import segmenter.pytorch as tm  # noqa: E402
from parity_tests import mmlab  # noqa: E402
from parity_tests.google_npz import hwio, vit_arrays  # noqa: E402
from segmenter.convert import ConversionError, convert, load_weights, strip_prefix, to_layout  # noqa: E402
from tests.helpers import tiered  # noqa: E402

REL_TOL = 1e-5  # max |ours - timm| over max |timm|
TRAIN_SIZE = 128
# The fast tier keeps one model per stem: vit_base_r50_s16_224 (R50), vit_small_r26_s32_384 (R26), the tiny one.
SLOW = ("vit_large_r50_s32_384", "vit_base_r50_s16_384", "vit_base_r26_s32_224")
# timm name -> (stem_layers, patch_size, embed_dim, training size), read off vision_transformer_hybrid.py: the
# ResNetV2 `layers` (none: `create_resnetv2_stem` alone), `patch_size` (1 unless set) and the model's img_size.
HYBRIDS = {
    "vit_base_r50_s16_384": ([3, 4, 9], 1, 768, 384),
    "vit_base_r50_s16_224": ([3, 4, 9], 1, 768, 224),
    "vit_large_r50_s32_384": ([3, 4, 6, 3], 1, 1024, 384),
    "vit_small_r26_s32_384": ([2, 2, 2, 2], 1, 384, 384),
    "vit_base_r26_s32_224": ([2, 2, 2, 2], 1, 768, 224),
    "vit_tiny_r_s16_p8_384": ([], 8, 192, 384),
}


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Move every weight off timm's init by N(0, 0.02) noise (as the project's other parity tests do), so that the
    norms' affine parameters and every bias are exercised. Much larger draws (GroupNorm scales 1 +- 0.2) make the
    random R50 chaotic: 16 bottlenecks amplify float32 rounding (the twin with a standardisation formula equal to
    timm's up to rounding already differs by 4e-5 of the output scale), which no implementation could match."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))


def _timm(name: str, seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = timm.create_model(name, pretrained=False, dynamic_img_size=True, **kwargs)
    _perturb(m, seed)
    return m.eval()


def _pair(conv):
    """Our Paddle SegmenterViT and its twin, built from the converted architecture and loaded strictly."""
    bb = conv.arch.backbone_config()
    bb.pop("type")
    p, t = pm.SegmenterViT(**bb), tm.SegmenterViT(**bb)
    state = strip_prefix(conv.state, "backbone.")
    missing, unexpected = p.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    assert not missing and not unexpected, (missing, unexpected)
    t.load_state_dict(
        {k: torch.from_numpy(v) for k, v in strip_prefix(to_layout(conv.state, "torch"), "backbone.").items()},
        strict=True,
    )
    return p.eval(), t.eval()


def _compare(ref, p, t, shape, what: str) -> None:
    x = np.random.RandomState(sum(shape)).randn(*shape).astype(np.float32)
    with torch.no_grad():
        want = ref.forward_features(torch.from_numpy(x)).numpy()
        got_t = t(torch.from_numpy(x)).numpy()
    with paddle.no_grad():
        got_p = p(paddle.to_tensor(x)).numpy()
    scale = float(np.abs(want).max())
    for side, got in (("paddle", got_p), ("torch twin", got_t)):
        assert got.shape == want.shape, f"{what} {side} {shape}: shape {got.shape} vs timm {want.shape}"
        d = float(np.abs(got - want).max())
        assert d <= REL_TOL * scale, f"{what} {side} {shape}: max|diff|={d:.2e} over max|timm|={scale:.2f}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in HYBRIDS])
def test_hybrid_file_matches_timm_forward(name, tmp_path):
    """timm's own hybrid (its full ResNet stem, one transformer block) saved as timm's users save it: the converter
    reads the stem's stages, patch and training grid from the keys, and both our models give timm's
    forward_features at a square and a non-square size (positions resampled from the training grid)."""
    layers, patch, D, _ = HYBRIDS[name]
    ref = _timm(name, seed=len(name), depth=1, img_size=TRAIN_SIZE)  # a small training grid keeps timm's init fast
    ext = ".safetensors" if name.endswith("224") else ".pth"
    path = str(tmp_path / f"{name}{ext}")
    if ext == ".pth":
        torch.save(ref.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    conv = load_weights(path)
    a = conv.arch
    assert conv.fmt == "timm" and (a.stem_layers, a.patch_size, a.embed_dim, a.img_size, a.in_channels, a.depth) == (
        layers,
        patch,
        D,
        [TRAIN_SIZE, TRAIN_SIZE],
        3,
        1,
    ), (conv.fmt, a)
    assert sorted(conv.dropped) == sorted(k for k in ref.state_dict() if k.startswith("head.")), conv.dropped
    p, t = _pair(conv)
    for shape in ((2, 3, 96, 96), (2, 3, 64, 160)):  # positions resampled from the 128x128 grid
        _compare(ref, p, t, shape, name)


@pytest.mark.slow
def test_full_r50_vit_b16_384_at_its_size():
    """vit_base_r50_s16_384 whole (12 blocks) at 384x384 and 384x256, loaded from timm's state dict as it is. One
    image each (the file rows above run batches of 2); the twin is built without its init, every weight of it
    being loaded (strictly) next: the init of its 86 M parameters and the second image took ~20 s of ~50."""
    ref = _timm("vit_base_r50_s16_384", seed=3)
    bb = dict(
        img_size=384,
        patch_size=1,
        embed_dim=768,
        depth=12,
        num_heads=12,
        norm_eps=1e-6,
        pos_embed_interp="bicubic_antialias",
        stem_layers=[3, 4, 9],
    )
    p = pm.SegmenterViT(**bb)
    with mmlab.no_init():
        t = tm.SegmenterViT(**bb)
    sd = {k: v.numpy() for k, v in ref.state_dict().items() if not k.startswith("head.")}
    linear = {k for k in sd if k.startswith("blocks.") and k.endswith(".weight") and sd[k].ndim == 2}
    p.set_state_dict({k: paddle.to_tensor(np.ascontiguousarray(v.T) if k in linear else v) for k, v in sd.items()})
    t.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    p.eval(), t.eval()
    for shape in ((1, 3, 384, 384), (1, 3, 384, 256)):
        _compare(ref, p, t, shape, "vit_base_r50_s16_384 (12 blocks)")


def _count_ours(name: str) -> int:
    """Our whole backbone's parameters, built under paddle.LazyGuard: shapes only, no memory and no init (ViT-L
    R50 at 384, 328 M parameters, took 10 s to initialise)."""
    layers, patch, D, img = HYBRIDS[name]
    depth, heads = (24, 16) if D == 1024 else (12, D // 64)
    with paddle.LazyGuard():
        m = pm.SegmenterViT(
            img_size=img, patch_size=patch, embed_dim=D, depth=depth, num_heads=heads, stem_layers=layers
        )
    return sum(int(np.prod(q.shape)) for q in m.parameters())


COUNT_FAST = ["vit_small_r26_s32_384", "vit_tiny_r_s16_p8_384"]


@pytest.mark.parametrize("name", tiered(HYBRIDS, COUNT_FAST))
def test_parameter_count_equals_timm(name):
    """Our whole Paddle backbone plus timm's ImageNet head (embed_dim * K + K for its default K classes: 1000, or none
    for the in21k `_224` rows; segmentation has no such classifier) has as many parameters as timm's default model
    (built on the meta device: shapes only)."""
    ref = timm.create_model(name, pretrained=False, device="meta")
    theirs = sum(q.numel() for q in ref.parameters())
    K, D = ref.num_classes, HYBRIDS[name][2]
    ours = _count_ours(name) + D * K + K
    assert ours == theirs, f"{name}: ours {ours:,} vs timm {theirs:,}"
    if name == "vit_base_r50_s16_384":  # timm's table: 98.95 M
        assert round(ours / 1e6, 2) == 98.95, f"{ours:,}"


# Google's R50+ViT .npz: the ResNetV2 stem's part written here (GroupNorm scale/bias, blocks and units counted
# from 1), the ViT part by parity_tests/google_npz.py.
def _google_npz(ref, path: str, heads: int) -> None:
    s = {k: v.numpy() for k, v in ref.state_dict().items()}
    stem = "patch_embed.backbone.stem." if "patch_embed.backbone.stem.conv.weight" in s else "patch_embed.backbone."
    out = {
        "conv_root/kernel": hwio(s[stem + "conv.weight"]),
        "gn_root/scale": s[stem + "norm.weight"],
        "gn_root/bias": s[stem + "norm.bias"],
        **vit_arrays(s, heads),
    }
    for k, v in s.items():
        parts = k.split(".")
        if parts[:3] != ["patch_embed", "backbone", "stages"]:
            continue
        i, j, layer, param = int(parts[3]), int(parts[5]), ".".join(parts[6:-1]), parts[-1]
        g = f"block{i + 1}/unit{j + 1}/"
        names = {
            "conv1": "conv1",
            "conv2": "conv2",
            "conv3": "conv3",
            "norm1": "gn1",
            "norm2": "gn2",
            "norm3": "gn3",
            "downsample.conv": "conv_proj",
            "downsample.norm": "gn_proj",
        }
        leaf = {"weight": "kernel" if "conv" in layer else "scale", "bias": "bias"}[param]
        out[f"{g}{names[layer]}/{leaf}"] = hwio(v) if v.ndim == 4 else v
    np.savez(path, **out)


@pytest.mark.parametrize("name", ["vit_base_r50_s16_384", "vit_tiny_r_s16_p8_384"])
def test_google_npz_read_by_timm_then_converted(name, tmp_path):
    """The hand-written .npz is first read by timm's own Google-checkpoint loader into a model whose every weight
    differs: it must become the model it was written from. Then `--from npz` (detected) gives timm's forward in
    both frameworks, and the written config records the stem. Width 64 and 2 heads keep it small; the stem is whole."""
    from timm.models.vision_transformer import _load_weights

    small = dict(embed_dim=64, num_heads=2, depth=2, img_size=128)
    ref = _timm(name, seed=5, **small)
    path = str(tmp_path / "R50+ViT.npz")
    _google_npz(ref, path, heads=2)
    read_back = _timm(name, seed=6, **small)
    _load_weights(read_back, path)
    for k, v in ref.state_dict().items():
        assert torch.equal(read_back.state_dict()[k], v), f"timm's npz loader reads {k} differently"
    cfg = str(tmp_path / "hybrid.yml")
    # timm's forward resamples positions bicubic with antialias; the npz family's default is bilinear (Google's).
    conv = convert(
        path, str(tmp_path / "hybrid.pdparams"), overrides={"pos_embed_interp": "bicubic_antialias"}, save_config=cfg
    )
    layers, patch, _, _ = HYBRIDS[name]
    a = conv.arch
    assert conv.fmt == "npz" and (a.stem_layers, a.patch_size, a.num_heads, a.img_size) == (
        layers,
        patch,
        2,
        [128, 128],
    ), (conv.fmt, a)
    p, t = _pair(conv)
    _compare(ref, p, t, (2, 3, 64, 96), f"{name} via .npz")
    import yaml

    with open(cfg) as f:
        bb = yaml.safe_load(f)["model"]["backbone"]
    assert (bb["stem_layers"], bb["patch_size"]) == (layers, patch), bb
    card = load_weights(str(tmp_path / "hybrid.pdparams"))  # read back with its model card
    assert card.arch.stem_layers == layers and card.arch.num_heads == 2, card.arch


def test_hybrid_file_missing_a_stem_key_is_refused(tmp_path):
    """Strict: a hybrid state dict without one ResNet weight names it, and nothing is written."""
    ref = _timm("vit_small_r26_s32_384", seed=8, depth=1, embed_dim=64, num_heads=1, img_size=64)
    sd = ref.state_dict()
    del sd["patch_embed.backbone.stages.2.blocks.1.norm2.bias"]
    path = str(tmp_path / "r26.pth")
    torch.save(sd, path)
    with pytest.raises(ConversionError, match=r"stages\.2\.blocks\.1\.norm2\.bias"):
        convert(path, str(tmp_path / "out.pdparams"))
    assert not (tmp_path / "out.pdparams").exists()

"""Shapes, gradients, determinism and padding behaviour of the Paddle Segmenter."""

import numpy as np
import paddle
import pytest

from segmenter.models import VIT_PRESETS, Segmenter
from segmenter.models.pos_embed import resample_pos_embed
from tests.helpers import decoder_cfg, tiny_segmenter, tiny_vit

paddle.seed(0)
SIZES = [(32, 32), (37, 50), (5, 7), (64, 40)]


@pytest.mark.parametrize("preset", list(VIT_PRESETS))
@pytest.mark.parametrize("decoder", ["linear", "mask_transformer"])
def test_logits_shape_every_preset(preset, decoder):
    model = tiny_segmenter(decoder, num_classes=7, preset=preset)
    model.eval()
    with paddle.no_grad():
        for h, w in SIZES:
            out = model(paddle.randn([2, 3, h, w]))
            assert isinstance(out, list) and len(out) == 1, f"expected [logits], got {type(out)} of {len(out)}"
            assert list(out[0].shape) == [2, 7, h, w], f"{preset}/{decoder} at {h}x{w}: got {list(out[0].shape)}"


@pytest.mark.parametrize("patch_size", [8, 16, 32])
@pytest.mark.parametrize("distilled", [False, True])
def test_backbone_tokens(patch_size, distilled):
    vit = tiny_vit("tiny", patch_size=patch_size, img_size=64, distilled=distilled, norm_eps=1e-12)
    vit.eval()
    h, w = 70, 45  # padded to multiples of the patch
    gh, gw = -(-h // patch_size), -(-w // patch_size)
    with paddle.no_grad():
        tokens = vit(paddle.randn([1, 3, h, w]))
    prefix = 2 if distilled else 1
    assert list(tokens.shape) == [1, prefix + gh * gw, 192], f"got {list(tokens.shape)}"
    # forward_features ends with the final LayerNorm (weight 1, bias 0 at init): every token has zero mean and
    # unit variance (v / (v + eps) for a token of variance v: eps is made negligible here, the tokens' v is ~1e-2)
    t = tokens.numpy()
    assert np.abs(t.mean(-1)).max() < 1e-4, f"max |token mean| = {np.abs(t.mean(-1)).max():.2e}"
    var_dev = np.abs(t.var(-1) - 1).max()
    assert var_dev < 1e-3, f"max |token variance - 1| = {var_dev:.2e}"


def test_padding_matches_explicit_zero_padding():
    """An input that is not a multiple of the patch is zero-padded, run, and the logits cropped."""
    model = tiny_segmenter("mask_transformer", img_size=32)
    model.eval()
    x = paddle.randn([1, 3, 27, 21])
    padded = paddle.zeros([1, 3, 32, 32])
    padded[:, :, :27, :21] = x
    with paddle.no_grad():
        a = model(x)[0].numpy()
        b = model(padded)[0].numpy()[:, :, :27, :21]
    diff = np.abs(a - b).max()
    assert diff < 1e-5, f"max|diff| between implicit and explicit padding = {diff:.2e}"


def test_pos_embed_resampled_for_larger_input():
    vit = tiny_vit("tiny", img_size=32)  # 2x2 grid
    vit.eval()
    with paddle.no_grad():
        tokens = vit(paddle.randn([1, 3, 64, 96]))
    assert list(tokens.shape) == [1, 1 + 4 * 6, 192], f"got {list(tokens.shape)}"


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "bicubic_antialias"])
@pytest.mark.parametrize("prefix", [1, 2])
@pytest.mark.parametrize("old,new", [((3, 4), (5, 7)), ((7, 5), (3, 4))])
def test_resample_pos_embed_matches_timm(mode, prefix, old, new):
    """Both twins' resampling equals timm's `resample_abs_pos_embed` on a random, non-square grid, grown and shrunk
    (where antialiasing widens the kernel), so a swapped h/w, a wrong mode or a moved prefix token shows; the same
    grid size returns the input unchanged. `bicubic_antialias` is timm's default (antialias=True)."""
    import torch
    from timm.layers import resample_abs_pos_embed

    from segmenter.pytorch.pos_embed import resample_pos_embed as torch_resample

    pe = np.random.RandomState(0).randn(1, prefix + old[0] * old[1], 8).astype("float32")
    want = resample_abs_pos_embed(
        torch.from_numpy(pe),
        list(new),
        list(old),
        num_prefix_tokens=prefix,
        interpolation=mode.split("_")[0],
        antialias=mode.endswith("antialias"),
    ).numpy()
    for name, got in (
        ("paddle", resample_pos_embed(paddle.to_tensor(pe), old, new, prefix, mode).numpy()),
        ("torch", torch_resample(torch.from_numpy(pe), old, new, prefix, mode).numpy()),
    ):
        assert got.shape == want.shape == (1, prefix + new[0] * new[1], 8), (
            f"{name}: got {got.shape}, timm {want.shape}"
        )
        d = float(np.abs(got - want).max())
        assert d < 1e-5, f"{name} {mode} {old}->{new}, {prefix} prefix tokens: max|diff| against timm {d:.2e}"
    same = resample_pos_embed(paddle.to_tensor(pe), old, old, prefix, mode)
    assert np.array_equal(same.numpy(), pe), "resampling to the same grid must return the input unchanged"


@pytest.mark.parametrize("decoder", ["linear", "mask_transformer"])
def test_gradients_reach_every_parameter(decoder):
    paddle.seed(1)
    model = tiny_segmenter(decoder, num_classes=4, depth=2, distilled=True)
    model.train()
    logits = model(paddle.randn([2, 3, 40, 24]))[0]
    label = paddle.randint(0, 4, [2, 40, 24])
    loss = paddle.nn.functional.cross_entropy(logits.transpose([0, 2, 3, 1]), label.unsqueeze(-1))
    loss.backward()
    no_grad = [p.name for p in model.parameters() if p.trainable and (p.grad is None or not p.grad.abs().sum() > 0)]
    # the distillation token only feeds the head of the classifier; in segmentation it still reaches the patch
    # tokens through attention, so it must get a gradient like every other parameter
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize("decoder", ["linear", "mask_transformer"])
def test_eval_mode_is_deterministic(decoder):
    vit = tiny_vit("tiny", depth=2, drop_rate=0.3, attn_drop_rate=0.3, drop_path_rate=0.3)
    model = Segmenter(3, vit, decoder_cfg(decoder, 192, dropout=0.3, drop_path_rate=0.3))
    x = paddle.randn([1, 3, 32, 48])
    model.eval()
    with paddle.no_grad():
        a, b = model(x)[0].numpy(), model(x)[0].numpy()
    assert np.array_equal(a, b), f"eval outputs differ: max|diff|={np.abs(a - b).max():.2e}"
    model.train()
    c = model(x)[0].numpy()
    assert np.abs(c - a).max() > 1e-4, "train mode with dropout 0.3 should differ from eval mode"


def test_attention_maps_flag():
    vit = tiny_vit("tiny", depth=2)
    vit.eval()
    with paddle.no_grad():
        plain = vit(paddle.ones([1, 3, 32, 48]))
        tokens, attns = vit(paddle.ones([1, 3, 32, 48]), return_attn=True)
    # the same maths, and the same kernels unless this CPU has the fused attention kernel (which the attention
    # maps cannot take: it never forms them)
    d = float(np.abs(plain.numpy() - tokens.numpy()).max())
    assert d <= 1e-5 * (1 + float(np.abs(tokens.numpy()).max())), f"return_attn changed the tokens by {d:.2e}"
    assert len(attns) == 2 and list(attns[0].shape) == [1, 3, 7, 7], f"got {[list(a.shape) for a in attns]}"
    rowsum = attns[0].sum(-1).numpy()
    assert np.abs(rowsum - 1).max() < 1e-5, f"attention rows must sum to 1: max dev {np.abs(rowsum - 1).max():.2e}"


def test_qkv_bias_switch():
    with_bias = tiny_segmenter("mask_transformer")
    no_bias = Segmenter(5, tiny_vit("tiny", qkv_bias=False), decoder_cfg("mask_transformer", 192, qkv_bias=False))
    keys_with = {k for k in with_bias.state_dict() if k.endswith("attn.qkv.bias")}
    keys_without = {k for k in no_bias.state_dict() if k.endswith("attn.qkv.bias")}
    assert len(keys_with) == 3 and not keys_without, f"with: {sorted(keys_with)}, without: {sorted(keys_without)}"


def test_layer_scale_switch():
    """layer_scale_init=None adds no parameters (weights saved without layer scale load strictly); a value adds
    blocks.i.ls1/ls2.gamma at that value, and the file of one kind is refused by the other, naming the keys."""
    from segmenter.models.weights import WeightsMismatchError, load_state_dict_strict

    paddle.seed(0)
    plain, again = tiny_vit("tiny", depth=2), tiny_vit("tiny", depth=2)
    scaled = tiny_vit("tiny", depth=2, layer_scale_init=1e-6)
    assert not [k for k in plain.state_dict() if ".ls" in k], sorted(plain.state_dict())
    load_state_dict_strict(again, {k: v.numpy() for k, v in plain.state_dict().items()}, "old.pdparams")
    ls = {k: v.numpy() for k, v in scaled.state_dict().items() if ".ls" in k}
    assert sorted(ls) == [f"blocks.{i}.ls{j}.gamma" for i in range(2) for j in (1, 2)], sorted(ls)
    assert all(v.shape == (192,) and np.all(v == np.float32(1e-6)) for v in ls.values()), ls
    with pytest.raises(WeightsMismatchError, match=r"blocks\.0\.ls1\.gamma"):
        load_state_dict_strict(scaled, {k: v.numpy() for k, v in plain.state_dict().items()}, "old.pdparams")
    with pytest.raises(ValueError, match=r"backbone.layer_scale_init: 0.0 .*null"):
        tiny_vit("tiny", layer_scale_init=0.0)


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_layer_scale_scales_each_residual_branch(gamma):
    """gamma 1: bit-identical to the same weights without layer scale; gamma 0: every block is the identity, so
    the tokens are norm(patch embedding + positions). Catches a dropped ls1/ls2 or gamma applied elsewhere."""
    paddle.seed(0)
    plain = tiny_vit("tiny", depth=2, norm_eps=1e-6)
    scaled = tiny_vit("tiny", depth=2, norm_eps=1e-6, layer_scale_init=1.0)
    state = {k: v.numpy() for k, v in plain.state_dict().items()}
    rng = np.random.RandomState(0)
    for k, v in state.items():  # biases and norms away from 0/1, so no branch is zero by accident
        state[k] = (v + 0.1 * rng.randn(*v.shape)).astype(np.float32)
    state.update({k: np.full(v.shape, gamma, np.float32) for k, v in scaled.state_dict().items() if ".ls" in k})
    scaled.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    plain.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items() if ".ls" not in k})
    plain.eval()
    scaled.eval()
    x = paddle.to_tensor(rng.randn(2, 3, 32, 48).astype(np.float32))
    with paddle.no_grad():
        got = scaled(x).numpy()
        if gamma == 1.0:
            want = plain(x).numpy()
        else:
            tokens = paddle.concat([scaled.cls_token.expand([2, -1, -1]), scaled.patch_embed(x)], axis=1)
            want = scaled.norm(tokens + resample_pos_embed(scaled.pos_embed, (2, 2), (2, 3), 1, "bilinear")).numpy()
    d = float(np.abs(got - want).max())
    assert d <= (0.0 if gamma == 1.0 else 1e-5), f"gamma={gamma}: max|diff|={d:.2e}"


@pytest.mark.parametrize("stem_layers,patch_size,stride", [([], 8, 32), ([1, 1], 1, 8)])
def test_hybrid_stem_pads_to_its_stride(stem_layers, patch_size, stride):
    """A hybrid stem's tokens cover `stride` pixels: an input that is not a multiple of it is zero-padded to one
    (the same logits as padding by hand, cropped), and the token grid is the padded size over the stride."""
    paddle.seed(2)
    model = tiny_segmenter("linear", img_size=64, stem_layers=stem_layers, patch_size=patch_size)
    model.eval()
    h, w = 70, 45
    gh, gw = -(-h // stride), -(-w // stride)
    x = paddle.randn([1, 3, h, w])
    padded = paddle.zeros([1, 3, gh * stride, gw * stride])
    padded[:, :, :h, :w] = x
    with paddle.no_grad():
        tokens = model.backbone(x)
        a = model(x)[0].numpy()
        b = model(padded)[0].numpy()[:, :, :h, :w]
    got = (model.backbone.stride, list(tokens.shape))
    assert got == (stride, [1, 1 + gh * gw, 192]), f"(stride, tokens) = {got}, want {(stride, [1, 1 + gh * gw, 192])}"
    diff = np.abs(a - b).max()
    assert diff < 1e-5, f"max|diff| between implicit and explicit padding = {diff:.2e}"


@pytest.mark.parametrize(
    "kw,says",
    [
        ({"stem_layers": [1, 1, 1, 1, 1], "patch_size": 1}, "at most 4 stages; give one bottleneck count per stage"),
        ({"stem_layers": [3, 4, 9], "patch_size": 16}, "patch_size=16 is not supported on a hybrid stem"),
        ({"stem_layers": [3, 4, 9], "patch_size": 1, "img_size": 40}, "multiple of the token stride 16"),
    ],
)
def test_hybrid_stem_config_errors_say_what_to_fix(kw, says):
    with pytest.raises(ValueError, match=says):
        tiny_vit("tiny", **kw)

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


def test_timm_layer_scale_matches_timm_forward(tmp_path):
    """timm's ViT with `init_values` (DeiT-III, CaiT-style LayerScale `blocks.i.ls{1,2}.gamma`, randomised around 1)
    at a non-square training size: ours and the twin vs timm, and our .pth is timm's state dict under `backbone.`."""
    import segmenter.pytorch as tm
    from segmenter.convert import convert, to_layout
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(11)
    ref = VisionTransformer(img_size=(32, 48), patch_size=16, embed_dim=64, depth=2, num_heads=1, num_classes=10,
                            init_values=1e-5)
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            t.copy_(1.0 + 0.2 * torch.randn(t.shape) if name.endswith((".gamma", "norm1.weight", "norm2.weight"))
                    else t + 0.05 * torch.randn(t.shape))
    ref.eval()
    path, ours_pth = str(tmp_path / "deit3.pth"), str(tmp_path / "ours.pth")
    torch.save(ref.state_dict(), path)
    conv = convert(path, str(tmp_path / "ours.pdparams"), overrides={"img_size": [32, 48]})
    assert conv.fmt == "timm" and conv.arch.layer_scale_init is not None, (conv.fmt, conv.arch)
    bb = conv.arch.backbone_config()
    bb.pop("type")
    p, t = pm.SegmenterViT(**bb), tm.SegmenterViT(**bb)
    p.set_state_dict({k: paddle.to_tensor(v) for k, v in strip_prefix(conv.state, "backbone.").items()})
    t.load_state_dict({k: torch.from_numpy(v) for k, v in
                       strip_prefix(to_layout(conv.state, "torch"), "backbone.").items()}, strict=True)
    p.eval()
    t.eval()
    x = np.random.RandomState(1).randn(2, 3, 32, 48).astype(np.float32)
    with torch.no_grad():
        want = ref.forward_features(torch.from_numpy(x)).numpy()
        got_t = t(torch.from_numpy(x)).numpy()
    got_p = p(paddle.to_tensor(x)).numpy()
    for name, got in (("paddle", got_p), ("torch twin", got_t)):
        d = float(np.abs(got - want).max())
        assert got.shape == want.shape and d <= TOL, f"{name} vs timm with LayerScale: max|diff|={d:.2e}"
    # The way back: timm's names are ours, so our .pth of it is timm's state dict (less the classifier), bit for bit.
    convert(str(tmp_path / "ours.pdparams"), ours_pth)
    back = strip_prefix(torch.load(ours_pth, weights_only=True), "backbone.")
    want_sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("head.")}
    assert sorted(back) == sorted(want_sd), sorted(set(back) ^ set(want_sd))
    differ = [k for k in want_sd if not torch.equal(back[k], want_sd[k])]
    assert not differ, f"{len(differ)} tensors differ after timm -> .pdparams -> .pth: {differ}"

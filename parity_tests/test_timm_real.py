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

"""Against an independent implementation: PaddleSeg 2.8's own LinearSegmenter / MaskSegmenter.

Random weights are saved in PaddleSeg's layout, converted by tools/convert.py, and our Paddle model and
PyTorch twin, built from the written config, must give PaddleSeg's logits (inputs multiples of 16, since
PaddleSeg does not pad).
"""

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.models import LinearSegmenter, MaskSegmenter
from paddleseg.models.backbones.vision_transformer import VisionTransformer

import segmenter  # noqa: F401
from segmenter.parity import gap, run_paddle, run_torch
from segmenter.pytorch import build_model
from tests.helpers import tiered, tool_exit_code

# Mask head of 150 classes: the written config inherits ADE20K, whose class count PaddleSeg checks.
NUM_CLASSES = 150


def _paddleseg_model(decoder: str, embed_dim: int, heads: int):
    """PaddleSeg's model with random weights. Its VisionTransformer.init_weight crashes on pretrained=None
    (it loads the path unconditionally), so that one method is replaced by a no-op for the construction."""
    mp = pytest.MonkeyPatch()
    mp.setattr(VisionTransformer, "init_weight", lambda self: None)
    try:
        bb = VisionTransformer(
            img_size=32,
            patch_size=16,
            embed_dim=embed_dim,
            depth=2,
            num_heads=heads,
            mlp_ratio=4,
            qkv_bias=True,
            final_norm=True,
        )
        if decoder == "linear":
            model = LinearSegmenter(num_classes=NUM_CLASSES, backbone=bb)
        else:
            model = MaskSegmenter(
                num_classes=NUM_CLASSES, backbone=bb, h_embed_dim=embed_dim, h_depth=2, h_num_heads=heads
            )
    finally:
        mp.undo()
    # Perturb every parameter so that LayerNorm scales, biases and tokens are not their trivial init values.
    rng = np.random.default_rng(0)
    for p in model.parameters():
        p.set_value(p.numpy() + 0.02 * rng.standard_normal(p.shape).astype(np.float32))
    model.eval()
    return model


@pytest.mark.parametrize(
    "decoder,embed_dim,heads", tiered([("linear", 192, 3), ("mask", 384, 6)], [("linear", 192, 3)])
)
def test_converted_paddleseg_model_matches(tmp_path, decoder, embed_dim, heads, capsys):
    paddle.seed(5)
    ps = _paddleseg_model(decoder, embed_dim, heads)
    src = tmp_path / "paddleseg_model.pdparams"
    paddle.save(ps.state_dict(), str(src))
    out_dir = tmp_path / "out"
    capsys.readouterr()
    # tools/convert.py as its command line runs it, in this process (a subprocess only adds ~4 s of imports)
    code = tool_exit_code(
        "convert.py", [str(src), str(out_dir / "ours.pdparams"), "--save-config", str(out_dir / "ours.yml")]
    )
    out, err = capsys.readouterr()
    assert code == 0, f"convert failed ({code}): {err[-2000:]}"
    assert "(paddleseg)" in out, f"format not recognised as PaddleSeg: {out}"
    ours = SegBuilder(Config(str(out_dir / "ours.yml"))).model
    ours.eval()
    twin = build_model(str(out_dir / "ours.yml"))
    twin.eval()
    for b, h, w in ((1, 32, 32), (2, 48, 64)):  # the configured size, and a larger one (bicubic resampling)
        x = np.random.default_rng(h).standard_normal((b, 3, h, w)).astype(np.float32)
        ref = run_paddle(ps, x)
        for name, got in (("Paddle", run_paddle(ours, x)), ("PyTorch twin", run_torch(twin, x))):
            g = gap(ref, got)
            assert g.max_abs <= 1e-4 and g.rel_l2 <= 1e-5 and g.argmax_agree == 1.0, (
                f"{decoder} {b}x{h}x{w}: PaddleSeg vs our {name}: {g}"
            )

"""The compiled path's budgets, pinned (issue 30): which sizes compile counts the padded token grid, the memory
guard counts the weights in MB, a compiled size's predictor hands its activations back after every call, and an
export asked for the fused attention where the kernel is not usable carries none."""

import numpy as np
import paddle
import pytest

import segmenter  # noqa: F401
from segmenter import deploy
from segmenter.engine import compiled
from segmenter.engine.compiled import MAX_TOKENS, MEMORY_MARGIN_MB, CompiledModel
from segmenter.models import Segmenter, SegmenterViT, layers
from segmenter.runtime import release_freed_memory, resident_mb


def tiny(patch: int = 16) -> Segmenter:
    paddle.seed(0)
    vit = SegmenterViT(img_size=64, patch_size=patch, embed_dim=32, depth=1, num_heads=2)
    m = Segmenter(3, vit, {"name": "linear"})
    m.eval()
    return m


def test_tokens_count_the_padded_grid():
    """The model pads an input to the patch, so 1024x1030 at patch 16 runs ceil(1030 / 16) = 65 columns: 64 x 65 =
    4160 tokens, past the 4096 budget, and stays in dygraph; 1024x1024 (4096 tokens) compiles; at patch 8 the same
    1024x1030 is 128 x 129 = 16512 tokens."""
    net = CompiledModel(tiny(16), compile_after=1)
    counts = {hw: net.tokens((3, *hw)) for hw in ((1024, 1030), (1024, 1024), (1030, 1030), (17, 1))}
    assert counts == {(1024, 1030): 4160, (1024, 1024): 4096, (1030, 1030): 4225, (17, 1): 2}, counts
    assert MAX_TOKENS == 4096, MAX_TOKENS
    for hw, worth in (((1024, 1030), False), ((1024, 1024), True)):
        net.seen[(3, *hw)] = 1
        assert net.worth_compiling((3, *hw)) is worth, f"{hw}: {counts.get(hw)} tokens, worth_compiling != {worth}"
    assert CompiledModel(tiny(8)).tokens((3, 1024, 1030)) == 16512


def test_the_memory_guard_counts_the_weights_in_mb():
    """memory_needed_mb = MEMORY_FACTOR x the forward's MB + the weights' MB + the margin. ViT-S/16 with a linear head
    of 150 classes holds 22.0 M float32 parameters, 84 MB (4 bytes each, 2**20 bytes a MB): counted from the
    state dict's own bytes here, so a unit off (bytes, KB, GB, or parameters instead of bytes) is off by >= 4x."""
    paddle.seed(0)
    m = Segmenter(150, SegmenterViT(img_size=512, embed_dim=384, depth=12, num_heads=6), {"name": "linear"})
    m.eval()
    state_mb = sum(v.numpy().nbytes for v in m.state_dict().values()) / 2**20
    weights_mb = CompiledModel(m).memory_needed_mb(0.0) - MEMORY_MARGIN_MB
    assert 80 < state_mb < 90, f"ViT-S/16 linear state dict {state_mb:.1f} MB"
    assert abs(weights_mb - state_mb) < 0.5, f"guard: {weights_mb:.2f} MB of weights, state: {state_mb:.2f}"
    forward = CompiledModel(m).memory_needed_mb(100.0) - CompiledModel(m).memory_needed_mb(0.0)
    assert abs(forward - compiled.MEMORY_FACTOR * 100.0) < 1e-6, f"100 MB of forward counted as {forward:.1f} MB"


def test_a_compiled_size_hands_its_activations_back_after_each_call(monkeypatch):
    """Each call through a compiled size ends with Predictor.release (paddle's clear_intermediate_tensor and
    try_shrink_memory), so the process's memory stays flat over repeated calls. paddle 3.3.1's PIR executor already
    drops most intermediates itself: removing the release showed no RSS difference at 768x768 (83 MB added either
    way), so the call itself is pinned beside the flat memory."""
    released = []
    real = deploy.Predictor.release
    monkeypatch.setattr(deploy.Predictor, "release", lambda self: released.append(1) or real(self))
    net = CompiledModel(tiny(), compile_after=1, min_tokens=0, num_threads=1)
    x = paddle.to_tensor(np.random.RandomState(0).rand(1, 3, 128, 128).astype("float32"))
    rows = []
    with paddle.no_grad():
        net(x)  # compiles (the check run releases once)
        assert list(net.predictors) == [(3, 128, 128)], (list(net.predictors), net.failed)
        released.clear()
        for _ in range(6):
            net(x)
            release_freed_memory()
            rows.append(resident_mb())
    assert len(released) == 6, f"6 compiled calls released {len(released)} times"
    growth = max(rows[1:]) - rows[0]
    assert growth < 8, f"resident memory over 6 calls: {[round(r) for r in rows]} MB (+{growth:.0f} MB)"


@pytest.mark.parametrize("how", ["no AVX-512", "SEGMENTER_FUSED_ATTENTION=0"])
def test_a_fused_export_without_a_usable_kernel_carries_none(how, tmp_path, monkeypatch):
    """deploy.export(fused_attention=True) on a CPU without the kernel (faked: no avx512f), or with the kernel turned
    off by the environment, traces the explicit product: its program holds no self_dp_attention op and its
    predictor runs (it would fail on a CPU without AVX-512)."""
    from paddle.base import core

    monkeypatch.setitem(layers._FUSED, "dygraph", None)  # decided again, under the fake
    if how == "no AVX-512":
        monkeypatch.setattr(core, "supports_avx512f", lambda: False)
    else:
        monkeypatch.setenv("SEGMENTER_FUSED_ATTENTION", "0")
    m = tiny()
    prefix = deploy.export(m, str(tmp_path / "m"), (64, 64), batch_size=None, fused_attention=True)
    with open(deploy._model_file(prefix)) as f:
        fused_ops = f.read().count("self_dp_attention")
    assert fused_ops == 0, f"{how}: the export holds {fused_ops} fused attention op(s)"
    assert layers._FUSED["dygraph"] is False, layers._FUSED
    x = np.random.RandomState(1).rand(1, 3, 64, 64).astype("float32")
    with paddle.no_grad():
        ref = m(paddle.to_tensor(x))[0].numpy()
    d = float(np.abs(deploy.create_predictor(prefix, 1)(x)[0] - ref).max())
    assert d <= 1e-5, f"{how}: predictor vs dygraph max|diff|={d:.2e}"

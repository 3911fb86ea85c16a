"""Fast paths: runtime CPU settings and the exported deployment predictor match the eager model."""

import os
import sys

import numpy as np
import paddle
import pytest

import segmenter
from segmenter import deploy, runtime
from segmenter.models import Segmenter, SegmenterViT
from tests.helpers import tiered


def paddle_threads() -> int:
    """Threads of the OpenMP runtime Paddle ships (libiomp5), read from the library itself: what Paddle was told."""
    from threadpoolctl import threadpool_info  # a PaddleSeg dependency (through scikit-learn)

    pools = [
        p for p in threadpool_info() if p["internal_api"] == "openmp" and os.sep + "paddle" + os.sep in p["filepath"]
    ]
    assert len(pools) == 1, f"expected paddle's libiomp5 among {[p['filepath'] for p in threadpool_info()]}"
    return pools[0]["num_threads"]


def test_configure_cpu_sets_threads_and_amd_flag(monkeypatch):
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: "AuthenticAMD")
    try:
        for n in (2, 1):
            runtime.configure_cpu(num_threads=n)
            assert paddle_threads() == n, f"configure_cpu(num_threads={n}): paddle runs {paddle_threads()} threads"
        assert os.environ.get("MKL_DEBUG_CPU_TYPE") == "5", (
            f"MKL_DEBUG_CPU_TYPE={os.environ.get('MKL_DEBUG_CPU_TYPE')!r} on AMD"
        )
        monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
        monkeypatch.setattr(runtime, "cpu_vendor", lambda: "GenuineIntel")
        runtime.configure_cpu(num_threads=1)
        assert "MKL_DEBUG_CPU_TYPE" not in os.environ, (
            f"MKL_DEBUG_CPU_TYPE={os.environ['MKL_DEBUG_CPU_TYPE']!r} set on Intel (it would disable AVX-512)"
        )
    finally:
        monkeypatch.undo()
        runtime.configure_cpu()


def test_default_threads_split_between_local_ranks(monkeypatch):
    monkeypatch.setattr(runtime, "_USER_OMP_NUM_THREADS", None)  # as read before paddle loaded
    monkeypatch.setattr(runtime, "available_cores", lambda: 8)
    monkeypatch.setenv("PADDLE_LOCAL_SIZE", "4")  # what paddle.distributed.launch --nproc_per_node 4 sets
    assert runtime.default_threads() == 2, f"8 cores, 4 local ranks -> {runtime.default_threads()} threads each"
    monkeypatch.setenv("PADDLE_LOCAL_SIZE", "16")
    assert runtime.default_threads() == 1, "more ranks than cores must still give each rank one thread"
    monkeypatch.setattr(runtime, "_USER_OMP_NUM_THREADS", "3")
    assert runtime.default_threads() == 3, "an explicit OMP_NUM_THREADS wins"


def test_deploy_matches_dygraph(tmp_path):
    paddle.seed(0)
    for dec in ({"name": "linear"}, {"name": "mask_transformer", "n_layers": 1, "d_model": 64, "n_heads": 2}):
        m = Segmenter(5, SegmenterViT(img_size=64, embed_dim=64, depth=2, num_heads=2), dec)
        m.eval()
        x = np.random.RandomState(0).rand(2, 3, 64, 64).astype("float32")
        with paddle.no_grad():
            ref = m(paddle.to_tensor(x))[0].numpy()
        prefix = str(tmp_path / dec["name"] / "model")
        deploy.export(m, prefix, (64, 64), batch_size=None)
        out = deploy.create_predictor(prefix, num_threads=1)(x)[0]
        diff = float(np.abs(out - ref).max())
        assert out.shape == ref.shape and diff < 1e-5, f"{dec['name']}: shape {out.shape} max|diff|={diff:.2e}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux only")
def test_malloc_reuses_freed_memory():
    """After `import segmenter` a freed 64 MB block is reused: touching a second one costs few page faults."""
    import resource

    assert segmenter.runtime.cpu_settings().get("malloc_keep_freed"), f"settings: {segmenter.runtime.cpu_settings()}"
    np.ones(1 << 24, np.float32).sum()  # 64 MB, freed at once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(1 << 24, np.float32).sum()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 100, f"{faults} page faults for a reused 64 MB block (>500 here when malloc unmapped it)"


# the last two rows: grids over MAX_PRODUCT_GRID (128) per side, which take the framework's own kernel (patch-8
# models on whole images)
UPSAMPLES = [((32, 32), (512, 512)), ((3, 4), (50, 61)), ((10, 12), (7, 5)), ((8, 8), (8, 8))]
UPSAMPLES += [((129, 40), (1032, 320)), ((40, 140), (150, 1115))]


@pytest.mark.parametrize("hw,size", UPSAMPLES)
def test_upsample_bilinear_matches_interpolate(hw, size):
    """The matmul upsampling of both twins equals each framework's F.interpolate(bilinear, align_corners=False),
    and Paddle's equals PyTorch's interpolation (the independent one), also where the kernel takes over."""
    import torch
    import torch.nn.functional as TF

    from segmenter.models.segmenter import upsample_bilinear as paddle_up
    from segmenter.pytorch.segmenter import upsample_bilinear as torch_up

    x = np.random.RandomState(0).randn(2, 3, *hw).astype("float32")
    ref = paddle.nn.functional.interpolate(
        paddle.to_tensor(x), size=list(size), mode="bilinear", align_corners=False
    ).numpy()
    got = paddle_up(paddle.to_tensor(x), list(size)).numpy()
    d = float(np.abs(got - ref).max())
    assert got.shape == ref.shape and d <= 1e-5, f"paddle {hw}->{size}: shape {got.shape} max|diff|={d:.2e}"
    ref = TF.interpolate(torch.from_numpy(x), size=list(size), mode="bilinear", align_corners=False).numpy()
    # two kernels that place source coordinates in float32 their own way: 2.9e-05 measured on values up to ~4.5
    # (140 -> 1115 columns); align_corners=True instead would be off by ~1
    d = float(np.abs(got - ref).max())
    assert d <= 1e-4, f"paddle {hw}->{size} against torch's interpolate: max|diff|={d:.2e}"
    got = torch_up(torch.from_numpy(x), list(size)).numpy()
    d = float(np.abs(got - ref).max())
    assert got.shape == ref.shape and d <= 1e-5, f"torch {hw}->{size}: shape {got.shape} max|diff|={d:.2e}"


@pytest.mark.parametrize("hw,size", [((32, 32), (96, 80)), ((3, 1), (50, 61)), ((130, 4), (131, 9))])
def test_upsample_bilinear_nhwc_matches_interpolate_and_its_gradient(hw, size):
    """The training forward's channels-last upsampling of both twins equals each framework's own bilinear kernel
    (F.interpolate, align_corners=False) on the same maps, and so does the gradient it sends back to the maps for a
    random upstream gradient (the kernel's backward is an independent computation of it); 130 rows take the kernel."""
    import torch
    import torch.nn.functional as TF

    from segmenter.models.segmenter import upsample_bilinear_nhwc as paddle_up
    from segmenter.pytorch.segmenter import upsample_bilinear_nhwc as torch_up

    rs = np.random.RandomState(0)
    x = rs.randn(2, 3, *hw).astype("float32")  # [B, C, h, w]
    g = rs.randn(2, *size, 3).astype("float32")  # upstream gradient [B, H, W, C]

    def paddle_run(fn):
        t = paddle.to_tensor(x, stop_gradient=False)
        y = fn(t)  # [B, H, W, C]
        (y * paddle.to_tensor(g)).sum().backward()
        return y.numpy(), t.grad.numpy()

    def torch_run(fn):
        t = torch.from_numpy(x).requires_grad_()
        y = fn(t)
        (y * torch.from_numpy(g)).sum().backward()
        return y.detach().numpy(), t.grad.numpy()

    pf = paddle.nn.functional
    for who, run, got_fn, ref_fn in (
        (
            "paddle",
            paddle_run,
            lambda t: paddle_up(t.transpose([0, 2, 3, 1]), list(size)),
            lambda t: pf.interpolate(t, size=list(size), mode="bilinear", align_corners=False).transpose([0, 2, 3, 1]),
        ),
        (
            "torch",
            torch_run,
            lambda t: torch_up(t.permute(0, 2, 3, 1), list(size)),
            lambda t: TF.interpolate(t, size=list(size), mode="bilinear", align_corners=False).permute(0, 2, 3, 1),
        ),
    ):
        (y, gx), (y_ref, gx_ref) = run(got_fn), run(ref_fn)
        d, dg = float(np.abs(y - y_ref).max()), float(np.abs(gx - gx_ref).max() / np.abs(gx_ref).max())
        assert y.shape == y_ref.shape and d <= 1e-5, f"{who} {hw}->{size}: shape {y.shape} max|diff|={d:.2e}"
        assert dg <= 1e-5, f"{who} {hw}->{size}: gradient max|diff| / max|grad| = {dg:.2e}"


@pytest.mark.parametrize("resize", ["crop", "stretch"])
def test_training_logits_are_channels_last(resize):
    """In training (dygraph) both twins return the logits [B, C, H, W] as a view of channels-last memory, so the
    loss's class-last view of them is contiguous (paddle's CPU cross entropy on the strided view of NCHW logits took
    3.8x the time); evaluation returns contiguous NCHW logits, and both modes give the same values."""
    import torch

    from segmenter.pytorch import Segmenter as TSegmenter
    from segmenter.pytorch import SegmenterViT as TSegmenterViT

    paddle.seed(0)
    m = Segmenter(5, SegmenterViT(img_size=64, embed_dim=32, depth=1, num_heads=2), {"name": "linear"}, resize)
    torch.manual_seed(0)
    t = TSegmenter(5, TSegmenterViT(img_size=64, embed_dim=32, depth=1, num_heads=2), {"name": "linear"}, resize)
    x = np.random.RandomState(0).rand(2, 3, 64, 48).astype("float32")
    m.train()
    train = m(paddle.to_tensor(x))[0]
    assert train.transpose([0, 2, 3, 1]).is_contiguous(), f"paddle training logits: strides {train.strides}"
    m.eval()
    ev = m(paddle.to_tensor(x))[0]
    assert ev.is_contiguous(), f"paddle evaluation logits: strides {ev.strides}"
    d = float((train - ev).abs().max())
    assert train.shape == ev.shape and d <= 1e-6, f"paddle training vs evaluation logits: max|diff|={d:.2e}"
    t.train()
    train = t(torch.from_numpy(x))[0]
    assert train.permute(0, 2, 3, 1).is_contiguous(), f"torch training logits: strides {train.stride()}"
    t.eval()
    ev = t(torch.from_numpy(x))[0]
    d = float((train - ev).detach().abs().max())
    assert ev.is_contiguous() and d <= 1e-6, f"torch training vs evaluation logits: max|diff|={d:.2e}"


def test_twin_fused_attention_matches_explicit():
    """The twin's fused attention (return_attn=False) gives the tokens of the explicit path (return_attn=True)."""
    import torch

    from segmenter.pytorch.layers import Attention

    torch.manual_seed(0)
    attn = Attention(64, 4).eval()
    x = torch.randn(2, 65, 64)
    with torch.no_grad():
        fused = attn(x)
        explicit, maps = attn(x, return_attn=True)
    d = float((fused - explicit).abs().max())
    assert maps.shape == (2, 4, 65, 65) and d <= 1e-6, f"maps {tuple(maps.shape)}, max|diff|={d:.2e}"


@pytest.mark.parametrize("omp", tiered([None, "1"], [None]))
def test_default_threads_survive_paddle_import(omp):
    """`import paddle` sets OMP_NUM_THREADS=1 when unset; after `import segmenter` Paddle must run the user's count,
    or every core this process may use (read from Paddle's OpenMP runtime, not from our own bookkeeping)."""
    import subprocess

    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SEGMENTER_CPU_TUNING", "PADDLE_LOCAL_SIZE")
    }
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import segmenter\nfrom tests.test_perf_paths import paddle_threads\nprint('THREADS', paddle_threads())"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=env["PYTHONPATH"])
    assert "THREADS" in r.stdout, f"rc={r.returncode}: {r.stderr[-800:]}"
    got = int(r.stdout.split("THREADS")[-1])
    want = int(omp) if omp else len(os.sched_getaffinity(0))
    assert got == want, f"OMP_NUM_THREADS={omp}: paddle runs {got} threads, expected {want}"


def test_deploy_onednn_where_paddle_accepts_the_graph(tmp_path):
    """Auto mode: oneDNN for a graph without interpolation, also at another size than img_size (export bakes the
    resampled position embedding in); MKL, with a warning, where paddle's oneDNN executor rejects the graph (one
    traced here without export's baking, so it resamples the position embedding by interpolation)."""
    import warnings

    paddle.seed(1)
    m = Segmenter(5, SegmenterViT(img_size=64, embed_dim=64, depth=2, num_heads=2), {"name": "linear"})
    m.eval()
    for size, want_onednn, baked in ((64, True, True), (96, True, True), (96, False, False)):
        x = np.random.RandomState(size).rand(2, 3, size, size).astype("float32")
        with paddle.no_grad():
            ref = m(paddle.to_tensor(x))[0].numpy()
        prefix = str(tmp_path / f"s{size}{baked}" / "model")
        if baked:
            deploy.export(m, prefix, (size, size), batch_size=None)
        else:
            spec = paddle.static.InputSpec([None, 3, size, size], dtype="float32", name="x")
            paddle.jit.save(paddle.jit.to_static(m, input_spec=[spec], full_graph=True), prefix)
            m.forward.rollback()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = deploy.create_predictor(prefix, num_threads=1)
            out = pred(x)[0]  # the oneDNN executor may reject the graph only at its first run
        assert pred.use_onednn == want_onednn, f"size {size}: use_onednn={pred.use_onednn}, expected {want_onednn}"
        fell_back = any("running with MKL" in str(w.message) for w in caught)
        assert fell_back == (not want_onednn), f"size {size}: fallback warning {fell_back}"
        diff = max(float(np.abs(out - ref).max()), float(np.abs(pred(x)[0] - ref).max()))
        assert diff < 1e-5, f"size {size} (oneDNN {pred.use_onednn}): max|diff| {diff:.2e} against eager"


def test_linear_backward_by_products_matches_autograd():
    """The Paddle twin's Linear in CPU dygraph training runs its own backward (the bias gradient a product with a row
    of ones); its gradients to the input, the weight and the bias equal paddle's own backward of F.linear and torch's,
    on tokens [B, N, in]. In evaluation, or without a gradient, it is F.linear."""
    import torch

    from segmenter.models.layers import Linear

    rs = np.random.RandomState(0)
    x, g = rs.randn(2, 37, 24).astype("float32"), rs.randn(2, 37, 40).astype("float32")
    paddle.seed(0)
    lin = Linear(24, 40)
    lin.train()

    def paddle_grads(fn):
        t = paddle.to_tensor(x, stop_gradient=False)
        y = fn(t)
        paddle.autograd.backward([y], [paddle.to_tensor(g)])
        out = [y.numpy(), t.grad.numpy(), lin.weight.grad.numpy(), lin.bias.grad.numpy()]
        lin.clear_gradients()
        return out, y.grad_fn.name()

    got, node = paddle_grads(lin)
    assert node.startswith("GradNodePyLayer"), f"training Linear ran {node}"
    ref, ref_node = paddle_grads(lambda t: paddle.nn.functional.linear(t, lin.weight, lin.bias))
    tx = torch.from_numpy(x).requires_grad_()
    tw = torch.from_numpy(lin.weight.numpy().T.copy()).requires_grad_()  # torch keeps [out, in]
    tb = torch.from_numpy(lin.bias.numpy()).requires_grad_()
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.from_numpy(g))
    torch_ref = [ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy().T, tb.grad.numpy()]
    for name, a, b, c in zip(("output", "input grad", "weight grad", "bias grad"), got, ref, torch_ref):
        for who, r in ((ref_node, b), ("torch", c)):
            d = float(np.abs(a - r).max() / (np.abs(r).max() + 1e-12))
            assert a.shape == r.shape and d <= 1e-6, f"{name} against {who}: max|diff| / max = {d:.2e}"
    lin.eval()
    assert lin(paddle.to_tensor(x, stop_gradient=False)).grad_fn.name() == "AddGradNode", "eval Linear is F.linear"


def test_linear_backward_skips_what_asks_no_gradient():
    """A training Linear on an input that asks no gradient (the image side of the first layer, a frozen layer's
    output) and with a frozen weight: backward gives the bias its gradient and nothing to the others (paddle refuses
    a PyLayer's gradient for an input with stop_gradient=True)."""
    from segmenter.models.layers import Linear

    rs = np.random.RandomState(1)
    paddle.seed(0)
    lin = Linear(8, 6)
    lin.train()
    lin.weight.stop_gradient = True
    x = paddle.to_tensor(rs.randn(3, 5, 8).astype("float32"))  # stop_gradient=True
    y = lin(x)
    assert y.grad_fn.name().startswith("GradNodePyLayer"), y.grad_fn.name()
    y.sum().backward()
    assert lin.weight.grad is None and x.grad is None
    np.testing.assert_allclose(lin.bias.grad.numpy(), np.full([6], 15.0, "float32"), rtol=1e-6)

"""The default inference path (engine/compiled.py: one predictor per input size) and chunked attention equal the
dygraph model; the switches that turn the fast path off; attention memory that grows linearly with the tokens."""

import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import segmenter  # noqa: F401
from segmenter.engine import compiled
from segmenter.engine.compiled import CompiledModel, inference_model
from segmenter.engine.infer import predict_probs
from segmenter.models import Segmenter, SegmenterViT, layers
from tests.helpers import tiered

DECODERS = ({"name": "linear"}, {"name": "mask_transformer", "n_layers": 1, "d_model": 64, "n_heads": 2})


def tiny(dec: dict, seed: int = 0) -> Segmenter:
    paddle.seed(seed)
    m = Segmenter(5, SegmenterViT(img_size=64, embed_dim=64, depth=2, num_heads=2), dec)
    m.eval()
    return m


@pytest.mark.parametrize("dec", tiered(DECODERS, DECODERS[:1]), ids=lambda d: d["name"])
def test_compiled_equals_dygraph_slide_flip_scales(dec, monkeypatch):
    """Slide windows (2 at a time), flip and two scales through CompiledModel: the probabilities of the dygraph
    model within 1e-5, the window size compiled (at another size than img_size: the baked position embedding),
    the 101-token windows attending in chunks of 16 rows, in both models."""
    monkeypatch.setattr(layers, "ATTN_CHUNK", 16)
    m = tiny(dec)
    x = paddle.to_tensor(np.random.RandomState(0).rand(1, 3, 100, 160).astype("float32"))
    kw = dict(
        is_slide=True,
        crop_size=(80, 80),
        stride=(48, 48),
        window_batch_size=2,
        flip_horizontal=True,
        scales=(1.0, 0.75),
    )
    with paddle.no_grad():
        ref = predict_probs(m, x, **kw).numpy()
        net = CompiledModel(m, min_tokens=0)
        out = predict_probs(net, x, **kw).numpy()
    # 80x80 windows at scale 1, 75x80 ones at 0.75 (75x120 image), each seen 2 times (flip)
    assert sorted(net.predictors) == [(3, 75, 80), (3, 80, 80)], f"compiled {list(net.predictors)}, seen {net.seen}"
    assert all(p.use_onednn for p in net.predictors.values()), "a graph fell back to MKL"
    d = float(np.abs(out - ref).max())
    assert d <= 1e-5, f"{dec['name']}: max|diff|={d:.2e} against the dygraph model"
    assert not isinstance(m.forward, paddle.jit.dy2static.program_translator.StaticFunction), (
        "export left the model converted to a static function"
    )
    with paddle.no_grad():
        again = m(x[:, :, :80, :80])[0]  # still a dygraph model: return_attn works
        _, attns = m.backbone(x[:, :, :80, :80], return_attn=True)
    assert again.shape == [1, 5, 80, 80] and len(attns) == 2


def test_whole_image_sizes_compile_on_second_sight():
    m = tiny(DECODERS[0])
    net = CompiledModel(m, min_tokens=0)
    with paddle.no_grad():
        for hw in ((64, 64), (48, 80), (64, 64), (64, 64)):
            x = paddle.to_tensor(np.random.RandomState(hw[1]).rand(2, 3, *hw).astype("float32"))
            out = net(x)[0].numpy()
            d = float(np.abs(out - m(x)[0].numpy()).max())
            assert d <= 1e-5, f"{hw}: max|diff|={d:.2e}"
    assert list(net.predictors) == [(3, 64, 64)] and net.seen == {(3, 64, 64): 2, (3, 48, 80): 1}, net.seen


def test_switches_turn_the_fast_path_off(monkeypatch):
    m = tiny(DECODERS[0])
    monkeypatch.delenv("SEGMENTER_FAST_PATH", raising=False)
    assert isinstance(inference_model(m), CompiledModel), "the compiled path is the default"
    assert isinstance(inference_model(m, True), CompiledModel)
    assert inference_model(m, False) is m
    monkeypatch.setenv("SEGMENTER_FAST_PATH", "0")
    assert inference_model(m) is m
    assert isinstance(inference_model(m, True), CompiledModel)


def test_small_sizes_stay_in_dygraph():
    """Below MIN_TOKENS tokens per image (512x512 at patch 16) the predictor would not earn its export back: a
    64x64 input (16 tokens) is never compiled however often it comes; a size at min_tokens is."""
    m = tiny(DECODERS[0])
    net = CompiledModel(m)
    assert net.min_tokens == compiled.MIN_TOKENS == 1024
    x = paddle.to_tensor(np.random.RandomState(3).rand(1, 3, 64, 64).astype("float32"))
    with paddle.no_grad():
        for _ in range(3):
            net(x)
        assert not net.predictors and net.seen == {(3, 64, 64): 3}, (list(net.predictors), net.seen)
        net = CompiledModel(m, min_tokens=16)
        for _ in range(2):
            net(x)
    assert list(net.predictors) == [(3, 64, 64)], net.seen


def test_a_size_stays_in_dygraph_without_the_memory(monkeypatch):
    """Where less memory is available than the predictor may take (MEMORY_FACTOR x what the dygraph forward added,
    plus the weights and a margin), the size is not compiled: one warning naming the model, the size and both
    figures, the dygraph model's results, and no second attempt."""
    m = tiny(DECODERS[0])
    monkeypatch.setattr(compiled, "available_mb", lambda: 100.0)  # under the 512 MB margin alone
    net = CompiledModel(m, compile_after=1, min_tokens=0)
    x = paddle.to_tensor(np.random.RandomState(4).rand(1, 3, 64, 64).astype("float32"))
    with paddle.no_grad():
        ref = m(x)[0].numpy()
        with pytest.warns(UserWarning, match=r"not compiling Segmenter at \[3, 64, 64\]: .* MB and 100 MB"):
            out = net(x)[0].numpy()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out2 = net(x)[0].numpy()
    assert not net.predictors and net.skipped == {(3, 64, 64)}, (list(net.predictors), net.skipped)
    assert float(np.abs(out - ref).max()) == 0.0 and float(np.abs(out2 - ref).max()) == 0.0
    monkeypatch.setattr(compiled, "available_mb", lambda: None)  # unknown (not Linux): compile
    net = CompiledModel(m, compile_after=1, min_tokens=0)
    with paddle.no_grad():
        net(x)
    assert list(net.predictors) == [(3, 64, 64)], net.skipped


def test_export_failure_falls_back_to_dygraph(monkeypatch):
    """A model paddle cannot trace warns once and runs in dygraph."""
    from segmenter import deploy

    m = tiny(DECODERS[0])

    def refuse(*a, **k):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(deploy, "export", refuse)
    net = CompiledModel(m, compile_after=1, min_tokens=0)
    x = paddle.to_tensor(np.random.rand(1, 3, 64, 64).astype("float32"))
    with paddle.no_grad(), pytest.warns(UserWarning, match="could not export Segmenter"):
        out = net(x)[0]
    with paddle.no_grad():
        out2 = net(x)[0]  # no second attempt, no second warning
    assert net.failed and not net.predictors and float((out - out2).abs().max()) == 0.0


def test_inferencer_flag(tmp_path, monkeypatch):
    """The Inferencer's fast_path reaches inference_model; both paths give equal probabilities."""
    from segmenter import Inferencer
    from tests.engine_helpers import write_tiny_config

    made = []
    real = compiled.inference_model

    def spy(model, fast_path=None, precision="fp32"):
        made.append(fast_path)
        return real(model, fast_path, precision)

    monkeypatch.setattr(compiled, "inference_model", spy)
    monkeypatch.setattr(compiled, "MIN_TOKENS", 0)  # the tiny config's images compile
    paddle.seed(0)
    cfg = write_tiny_config(tmp_path)
    seg_fast, seg_slow = Inferencer(cfg), Inferencer(cfg, fast_path=False)
    assert made == [None, False] and isinstance(seg_fast.net, CompiledModel) and seg_slow.net is seg_slow.model
    seg_slow.model.set_state_dict(seg_fast.model.state_dict())
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    a, b = seg_fast([img, img], return_probs=True), seg_slow([img, img], return_probs=True)
    d = max(float(np.abs(x.probs - y.probs).max()) for x, y in zip(a, b))
    assert d <= 1e-5 and seg_fast.net.predictors, f"max|diff|={d:.2e}, compiled {list(seg_fast.net.predictors)}"


@pytest.mark.parametrize("heads,n", [(2, 65), (3, 130)])
def test_chunked_attention_equals_full(monkeypatch, heads, n):
    """Query chunks (eval, N > ATTN_CHUNK) give the tokens of the full product (the return_attn path), Paddle and
    twin (whose fused SDPA is the twin line)."""
    import torch

    from segmenter.pytorch.layers import Attention as TorchAttention

    monkeypatch.setattr(layers, "ATTN_CHUNK", 16)  # chunked past 32 tokens
    monkeypatch.setitem(layers._FUSED, "dygraph", False)  # the chunks are the path without the fused kernel
    paddle.seed(0)
    attn = layers.Attention(48, heads)
    attn.eval()
    x = np.random.RandomState(n).randn(2, n, 48).astype("float32")
    with paddle.no_grad():
        chunked = attn(paddle.to_tensor(x)).numpy()
        full, maps = attn(paddle.to_tensor(x), return_attn=True)
    d = float(np.abs(chunked - full.numpy()).max())
    assert maps.shape == [2, heads, n, n] and d <= 1e-6, f"paddle: max|diff|={d:.2e}"
    t = TorchAttention(48, heads).eval()
    t.load_state_dict(
        {k: torch.from_numpy(v.numpy().T.copy() if v.ndim == 2 else v.numpy()) for k, v in attn.state_dict().items()}
    )
    with torch.no_grad():
        tout = t(torch.from_numpy(x)).numpy()
    d = float(np.abs(tout - chunked).max())
    assert d <= 1e-5, f"twin SDPA vs paddle chunks: max|diff|={d:.2e}"


needs_fused = pytest.mark.skipif(not layers._fused_kernel_usable(), reason="no fused attention kernel on this CPU")


@needs_fused
@pytest.mark.parametrize("batch,n,dim,heads", [(1, 7, 24, 3), (2, 65, 48, 2), (2, 600, 64, 1), (1, 1025, 384, 6)])
def test_fused_attention_equals_the_explicit_product(monkeypatch, batch, n, dim, heads):
    """At inference the fused CPU kernel (blocks of 512 keys, online softmax: 600 and 1025 tokens cross a block)
    gives the explicit product's tokens (the return_attn path) within 1e-5 of their scale, and the twin's."""
    import torch

    from segmenter.pytorch.layers import Attention as TorchAttention

    ran = []
    real = layers.fused_self_attention
    monkeypatch.setattr(layers, "fused_self_attention", lambda *a: ran.append(1) or real(*a))
    paddle.seed(n)
    attn = layers.Attention(dim, heads)
    attn.eval()
    x = np.random.RandomState(n).randn(batch, n, dim).astype("float32")
    with paddle.no_grad():
        fused = attn(paddle.to_tensor(x)).numpy()
        full, _ = attn(paddle.to_tensor(x), return_attn=True)
    assert ran == [1], "the fused kernel did not run"
    scale = 1.0 + float(np.abs(full.numpy()).max())
    d = float(np.abs(fused - full.numpy()).max())
    assert d <= 1e-5 * scale, f"fused vs explicit: max|diff|={d:.2e}"
    t = TorchAttention(dim, heads).eval()
    t.load_state_dict(
        {k: torch.from_numpy(v.numpy().T.copy() if v.ndim == 2 else v.numpy()) for k, v in attn.state_dict().items()}
    )
    with torch.no_grad():
        d = float(np.abs(t(torch.from_numpy(x)).numpy() - fused).max())
    assert d <= 1e-5 * scale, f"twin vs fused: max|diff|={d:.2e}"


@needs_fused
def test_fused_attention_only_where_no_gradient_is_asked(monkeypatch):
    """The fused kernel has no backward: in eval mode with gradients on (and in training) the explicit product runs
    and the weights get their gradient; under no_grad the kernel runs."""
    ran = []
    real = layers.fused_self_attention
    monkeypatch.setattr(layers, "fused_self_attention", lambda *a: ran.append(1) or real(*a))
    paddle.seed(0)
    attn = layers.Attention(32, 2)
    x = paddle.to_tensor(np.random.RandomState(0).randn(1, 40, 32).astype("float32"))
    for training in (False, True):
        attn.train(training)
        attn(x).sum().backward()
        g = attn.qkv.weight.grad
        assert g is not None and float(g.abs().max()) > 0, f"training={training}: no gradient reached qkv"
        attn.clear_gradients()
    assert ran == [], "the fused kernel ran where a gradient was asked"
    attn.eval()
    with paddle.no_grad():
        attn(x)
    assert ran == [1]


@needs_fused
def test_exports_carry_the_fused_kernel_only_when_asked(tmp_path):
    """deploy.export traces the explicit product by default (an export may go to a GPU or another CPU, or to ONNX);
    with fused_attention=True (the compiled path's own export) the graph holds the fused op, one per block, and its
    predictor equals the dygraph model."""
    from segmenter import deploy

    m = tiny(DECODERS[0])
    counts = {}
    for fused in (False, True):
        prefix = deploy.export(m, str(tmp_path / f"m{fused}"), (64, 64), batch_size=None, fused_attention=fused)
        with open(deploy._model_file(prefix)) as f:
            counts[fused] = f.read().count("self_dp_attention")
    assert counts == {False: 0, True: 2}, counts
    assert not layers._FUSED["static"], "the export left static graphs tracing the fused kernel"
    x = np.random.RandomState(5).rand(2, 3, 64, 64).astype("float32")
    with paddle.no_grad():
        ref = m(paddle.to_tensor(x))[0].numpy()
    out = deploy.create_predictor(prefix, 1)(x)[0]
    d = float(np.abs(out - ref).max())
    assert d <= 1e-5, f"fused export vs dygraph: max|diff|={d:.2e}"


MEMORY_CHILD = r"""
import json, resource, sys
import numpy as np, paddle
import segmenter
from segmenter.models import Segmenter, SegmenterViT, layers
layers.ATTN_CHUNK = int(sys.argv[1])
layers._FUSED["dygraph"] = sys.argv[2] == "fused"
paddle.seed(0)
m = Segmenter(3, SegmenterViT(img_size=64, embed_dim=32, depth=1, num_heads=2), {"name": "linear"})
m.eval()
import threading, time
# ru_maxrss is a high-water mark that the imports may already have set above the forward's peak (it read 0 MB
# growth for both paths in one CI run): sample the current RSS instead, before and during the forward
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20
base, peak, done = rss(), [0.0], threading.Event()
def watch():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
t = threading.Thread(target=watch)
t.start()
with paddle.no_grad():
    out = m(paddle.to_tensor(np.zeros((1, 3, 1024, 2048), "float32")))[0]
done.set()
t.join()
print("PEAK", json.dumps([base, max(peak[0], rss()), out.shape]))
"""


@pytest.mark.slow
def test_whole_cityscapes_image_attends_in_linear_memory():
    """A whole 2048x1024 image (8193 tokens): the full [2, 8193, 8193] map alone is 537 MB (its softmax as much
    again); in query chunks of 1024 rows, and through the fused kernel (512 x 512 blocks) where the CPU has it, the
    forward's peak grows by far less. Peak RSS of one subprocess each."""
    peaks = {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = {"chunked": layers.ATTN_CHUNK, "full": 10**9}
    if layers._fused_kernel_usable():
        paths["fused"] = 10**9  # no chunks to fall back on: the kernel's own blocks
    for path, chunk in paths.items():
        r = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(chunk), path],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=root),
            timeout=300,
        )
        line = [s for s in r.stdout.splitlines() if s.startswith("PEAK")]
        assert line, f"{path}: rc={r.returncode} {r.stderr[-600:]}"
        base, peak, shape = json.loads(line[0][5:])
        assert shape == [1, 3, 1024, 2048], shape
        peaks[path] = peak - base
    # The full map and its softmax are 2 x 537 MB; chunks keep 2 x 67 MB of them, the fused kernel 1 MB. The rest of
    # the forward (and what the allocator keeps, which varies with the thread count) is the same on every side.
    for path in set(peaks) - {"full"}:
        assert peaks["full"] - peaks[path] > 400, f"forward peak growth (MB): {peaks}"


def test_a_wrong_predictor_is_caught(monkeypatch):
    """A predictor whose logits are off (paddle 3.3.1's oneDNN did that to UPerNetViT) is replaced by MKL, then by
    the dygraph model; the results stay the dygraph model's."""
    from segmenter import deploy

    m = tiny(DECODERS[0])
    bad = {"onednn": True, "mkl": False}

    def skewed(real):  # the predictor's numpy runs and its tensor runs (the compile check reads the latter)
        def run(self, x):
            out = real(self, x)
            return [o + 1.0 for o in out] if bad["onednn" if self.use_onednn else "mkl"] else out

        return run

    monkeypatch.setattr(deploy.Predictor, "_run", skewed(deploy.Predictor._run))
    monkeypatch.setattr(deploy.Predictor, "run_tensors", skewed(deploy.Predictor.run_tensors))
    x = paddle.to_tensor(np.random.rand(1, 3, 64, 64).astype("float32"))
    with paddle.no_grad():
        ref = m(x)[0].numpy()
        for mkl_bad in (False, True):
            bad["mkl"] = mkl_bad
            net = CompiledModel(m, compile_after=1, min_tokens=0)
            with pytest.warns(UserWarning) as caught:
                out = net(x)[0].numpy()
            said = [str(w.message) for w in caught]
            assert "oneDNN predictor of Segmenter" in said[0] and len(said) == 1 + mkl_bad, said
            assert not mkl_bad or "MKL predictor of Segmenter at [3, 64, 64] is off by" in said[1], said
            d = float(np.abs(out - ref).max())
            assert d <= 1e-5, f"mkl_bad={mkl_bad}: max|diff|={d:.2e}"
            if mkl_bad:
                assert not net.predictors and "off by" in net.failed, (list(net.predictors), net.failed)
            else:
                assert [p.use_onednn for p in net.predictors.values()] == [False], "expected the MKL predictor"


@pytest.mark.parametrize("topic", [[], pytest.param(["versus"], marks=pytest.mark.slow)], ids=["paths", "versus"])
def test_benchmark_gpu_refused_on_a_cpu_build(topic):
    """`tools/benchmark.py [topic] --device gpu` on paddle's CPU build: one line saying what is missing, no
    traceback."""
    if paddle.device.is_compiled_with_cuda():
        pytest.skip("a CUDA build of Paddle: the GPU benchmark would run")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(
        [sys.executable, os.path.join(root, "tools", "benchmark.py"), *topic, "--device", "gpu"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=root),
        timeout=300,
    )
    lines = [s for s in r.stderr.splitlines() if s.strip() and "ccache" not in s and "warnings.warn" not in s]
    assert r.returncode != 0 and "Traceback" not in r.stderr, f"rc={r.returncode}: {r.stderr[-600:]}"
    assert len(lines) == 1 and "--device gpu needs a CUDA build of PaddlePaddle" in lines[0], lines


def test_hybrid_export_bakes_the_token_grid():
    """A hybrid (R50-style stem, patch_size 1 on the stem's stride-4 map) exported at another size than img_size:
    the baked position embedding has the forward's token grid (12x20 at 48x80), not the grid of patch_size 1
    (48x80 tokens: at 512x512 a 262144-token embedding that took the export past 9.8 GB), and the oneDNN predictor
    equals the dygraph model."""
    from segmenter.deploy import fixed_pos_embed

    paddle.seed(0)
    vit = SegmenterViT(img_size=64, stem_layers=[1], patch_size=1, embed_dim=32, depth=1, num_heads=2)
    m = Segmenter(5, vit, {"name": "linear"})
    m.eval()
    assert vit.stride == 4, vit.stride
    with fixed_pos_embed(m, (48, 80)):
        assert vit.pos_embed.shape == [1, 1 + 12 * 20, 32], vit.pos_embed.shape
    assert vit.pos_embed.shape == [1, 1 + 16 * 16, 32], "fixed_pos_embed left the resampled embedding behind"
    x = paddle.to_tensor(np.random.RandomState(1).rand(2, 3, 48, 80).astype("float32"))
    net = CompiledModel(m, compile_after=1, min_tokens=0)
    with paddle.no_grad():
        ref = m(x)[0].numpy()
        net(x)
        out = net(x)[0].numpy()  # through the predictor
    assert [p.use_onednn for p in net.predictors.values()] == [True], (list(net.predictors), net.failed)
    d = float(np.abs(out - ref).max())
    assert d <= 1e-5, f"max|diff|={d:.2e}"


def test_sizes_past_the_token_budget_stay_in_dygraph():
    """A size of more tokens per image than max_tokens is never compiled (its predictor would hold about twice the
    dygraph forward's memory); it keeps the dygraph model's results."""
    m = tiny(DECODERS[0])
    net = CompiledModel(m, compile_after=1, max_tokens=16, min_tokens=0)  # 64x64: 16 tokens; 64x80: 20
    with paddle.no_grad():
        for hw in ((64, 64), (64, 80), (64, 80)):
            x = paddle.to_tensor(np.random.RandomState(hw[1]).rand(1, 3, *hw).astype("float32"))
            d = float(np.abs(net(x)[0].numpy() - m(x)[0].numpy()).max())
            assert d <= 1e-5, f"{hw}: max|diff|={d:.2e}"
    assert list(net.predictors) == [(3, 64, 64)] and net.tokens((3, 64, 80)) == 20, (list(net.predictors), net.seen)


@pytest.mark.slow  # two processes (~9 s)
def test_first_compiled_call_memory_is_bounded():
    """The first call at a size (dygraph reference, export, predictor, check) adds at most 1.8x the resident memory
    a dygraph forward adds, on a logits-dominated model (150 classes at 384x384: 88 MB of logits), each measured in
    its own process by a thread sampling /proc/self/statm (benchmarks/compile_memory.py). Measured: 1.69x with the
    check reading the predictor's own output tensor; 1.88x when it copied that output to numpy; the old order
    (export, then the reference, full-size differences, the predictor run twice) 2.6x."""
    from benchmarks.compile_memory import run_child

    dy = run_child("dygraph", "tiny", "384", 1, 1, 3000)
    co = run_child("compiled", "tiny", "384", 1, 1, 3000)
    assert dy.get("peak_mb") and co.get("first_mb"), (dy, co)
    assert co["compiled"] == ["oneDNN"], co["compiled"]
    ratio = co["first_mb"] / dy["peak_mb"]
    assert ratio <= 1.8, f"first compiled call +{co['first_mb']:.0f} MB, dygraph forward +{dy['peak_mb']:.0f} MB"


def small_upernet(tmp_path) -> "paddle.nn.Layer":
    """The shipped ViT-B UPerNet + MLN config as a user builds it (PaddleSeg's Config and SegBuilder), cut to 4 blocks
    of width 64 and heads of 32 channels, with running BN statistics that are not the identity."""
    import yaml
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.cvlibs.config import parse_from_yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dic = parse_from_yaml(os.path.join(root, "configs", "upernet_vit", "upernet_vit_b16_mln_ade20k_512x512_160k.yml"))
    dic["model"]["backbone"].update(img_size=64, embed_dim=64, depth=4, num_heads=2, out_indices=[0, 1, 2, 3])
    for head in ("decode_head", "auxiliary_head"):
        dic["model"][head]["channels"] = 32
    (tmp_path / "upernet.yml").write_text(yaml.safe_dump(dic))
    paddle.seed(0)
    m = SegBuilder(Config(str(tmp_path / "upernet.yml"))).model
    rs = np.random.RandomState(0)
    for name, b in m.named_buffers():
        if name.endswith("_mean"):
            b.set_value(0.1 * rs.randn(*b.shape).astype("float32"))
        elif name.endswith("_variance"):
            b.set_value(0.5 + rs.rand(*b.shape).astype("float32"))
    m.eval()
    return m


def test_upernet_compiles_to_onednn(tmp_path):
    """UPerNetViT (MLN neck, pyramid pooling down to 1x1) compiles to the oneDNN predictor and equals the dygraph
    model. Paddle 3.3.1's oneDNN matmul got its resizes wrong (a conv's blocked output read as NCHW; an inner
    dimension of 1): logits off by ~8 until models.segmenter.separable_product wrote around both."""
    import warnings

    m = small_upernet(tmp_path)
    net = CompiledModel(m, compile_after=1, min_tokens=0)
    x = paddle.to_tensor(np.random.RandomState(2).rand(2, 3, 64, 96).astype("float32"))  # maps 4x6, PPM on 2x3
    with paddle.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # no "oneDNN predictor ... is off" warning
        ref = m(x)[0].numpy()
        net(x)
        out = net(x)[0].numpy()  # through the predictor
    assert [p.use_onednn for p in net.predictors.values()] == [True], (list(net.predictors), net.failed)
    d, top = float(np.abs(out - ref).max()), float(np.abs(ref).max())
    assert d <= 1e-5 * (1.0 + top), f"max|diff|={d:.2e} (max|logits| {top:.1f})"


@pytest.mark.parametrize("hw", [(1, 1), (1, 6), (4, 1), (4, 6)])
def test_separable_product_is_the_matmul_product(hw):
    """The oneDNN-safe form of the bilinear product (folded batch, broadcast product on a side of 1) equals
    a_h @ x @ a_w^T on 4-D x bitwise, in dygraph."""
    from segmenter.models.segmenter import separable_product

    rs = np.random.RandomState(0)
    x = paddle.to_tensor(rs.rand(2, 3, *hw).astype("float32"))
    a_h = paddle.to_tensor(rs.rand(5, hw[0]).astype("float32"))
    a_w = paddle.to_tensor(rs.rand(7, hw[1]).astype("float32"))
    ref = paddle.matmul(paddle.matmul(a_h, x), a_w, transpose_y=True).numpy()
    out = separable_product(x, a_h, a_w).numpy()
    assert out.shape == (2, 3, 5, 7) and np.array_equal(out, ref), f"max|diff|={np.abs(out - ref).max():.2e}"


ONEDNN_RUN = """
import pathlib, sys
import numpy as np
from segmenter import deploy
from tests.test_compiled import small_upernet

tmp = pathlib.Path(sys.argv[1])
prefix = deploy.export(small_upernet(tmp), str(tmp / "model"), (64, 96), batch_size=None)
deploy.create_predictor(prefix, 1, True)(np.random.RandomState(2).rand(2, 3, 64, 96).astype("float32"))
"""


def test_upernet_onednn_matmuls_skip_the_reference_kernel(tmp_path):
    """Every matmul of a small UPerNetViT's oneDNN predictor runs on an optimised oneDNN kernel (ONEDNN_VERBOSE names
    each primitive's): paddle 3.3.1's matmul_elementwise_add_fuse_pass, which deploy deletes, put the FPN's resize +
    lateral sums on the reference kernel (ViT-B at 256x256: 4.5 s against 1.5 s without the pass)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(
        [sys.executable, "-c", ONEDNN_RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=root, ONEDNN_VERBOSE="1", OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-800:]
    matmuls = [s.split(",")[6] for s in (r.stdout + r.stderr).splitlines() if ",exec,cpu,matmul," in s]
    assert matmuls and all(not k.startswith("ref") for k in matmuls), f"matmul kernels: {sorted(set(matmuls))}"


@pytest.mark.parametrize("tool", ["aug_eval", "aug_pred"], ids=["val.py", "predict.py"])
def test_no_fast_path_flag_and_the_config_key(tmp_path, tool):
    """val.py's and predict.py's --no_fast_path, and test_config.fast_path: false, reach the inference options as
    fast_path=False; without either it stays None (the default path, unless SEGMENTER_FAST_PATH=0)."""
    from segmenter.engine import cli
    from segmenter.engine.run import load_config
    from segmenter.engine.run import test_kwargs as eval_options
    from tests.engine_helpers import write_tiny_config

    p = cli.Parser("x")
    cli.add_inference(p, tool)
    assert "--no_fast_path" in p.format_help()
    cfg = load_config(write_tiny_config(tmp_path))
    for argv, want in (([], None), (["--no_fast_path"], False)):
        args = p.parse_args(argv)
        assert eval_options(cfg, cli.inference_overrides(args, False))["fast_path"] is want, argv
    cfg.dic["test_config"] = dict(cfg.dic.get("test_config") or {}, fast_path=False)
    assert eval_options(cfg, cli.inference_overrides(p.parse_args([]), False))["fast_path"] is False

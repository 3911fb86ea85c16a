"""bf16 inference: on a model trained here, bf16 keeps fp32's predictions (mIoU, argmax, logits within the bound bf16's
8-bit significand allows); every size of the compiled path runs in bf16 from its first call; the attention runs in
oneDNN's bf16 kernels; the precision reaches the tools, the YAML, both Inferencers and the demo page; and a CPU
without bf16 arithmetic (a faked /proc/cpuinfo) gets one line saying so."""

import json
import os
import subprocess
import sys
import threading
import urllib.request
import warnings

import numpy as np
import paddle
import pytest

import segmenter  # noqa: F401  (registers the components)
from segmenter import deploy, runtime
from segmenter.engine import compiled
from segmenter.engine.compiled import CompiledModel, inference_model
from segmenter.models import Segmenter, SegmenterViT
from tests.helpers import tool_exit_code

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_bf16 = pytest.mark.skipif(not runtime.bf16_flags(), reason="this CPU has no bf16 arithmetic")

# The quickstart model (embed 128, depth 3, patch 8) trained on 8 shapes images of 32 px until its classes separate on
# them (mIoU ~0.67 after 60 iterations, every class above 0.5), which are also its val set: a trained network whose
# logits have the margins of a real one, in a few seconds.
QUICK = """_base_: {root}/configs/quickstart/segmenter_tiny_shapes_64.yml
iters: 60
batch_size: 8
train_dataset: {{num_samples: 8, img_size: 32}}
val_dataset: {{num_samples: 8, img_size: 32, seed: 0, max_shapes: 4}}
model: {{backbone: {{img_size: 32}}}}
lr_scheduler: {{learning_rate: 0.003}}
test_config: {{is_slide: False}}
"""

# The logits' bound. bf16 keeps 8 significant bits, so rounding to it moves a value by at most u = 2^-8 of itself.
# oneDNN rounds both operands of each matmul, fc and conv to bf16 and accumulates in fp32: a product's result moves
# by at most ~2u of the sum of |terms| it adds. The logits are the end of G such products in a row: the patch
# embedding, 6 per block (qkv, q k^T, attn v, proj, fc1, fc2), the linear head and the two matmuls of the logits'
# upsampling, G = 1 + 6 * depth + 3 = 22 for the quickstart's 3 blocks. LayerNorm renormalises each block's input
# and the roundings are independent, so they add up as a random walk, not in a line: about 2u * sqrt(G) of the
# logits' scale (0.037 here). Measured: max|diff| 0.053 on logits up to 7.2, 0.0073 of their scale.
U = 2.0**-8


def logits_bound(depth: int) -> float:
    return 2 * U * np.sqrt(1 + 6 * depth + 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config path, weights folder) of the quickstart model trained on 8 images (see QUICK)."""
    from segmenter.engine.run import load_config, run_train

    tmp = tmp_path_factory.mktemp("bf16")
    cfg = str(tmp / "quick.yml")
    with open(cfg, "w") as f:
        f.write(QUICK.format(root=ROOT))
    run_train(load_config(cfg), str(tmp / "run"), seed=0, save_interval=60, log_iters=1000)
    return cfg, str(tmp / "run" / "iter_60")


@pytest.fixture(scope="module")
def evaluated(trained):
    """evaluate()'s metrics of the trained model on its val set: {"fp32": the dygraph model's, "bf16": ...}."""
    from segmenter.engine.evaluate import evaluate

    _, model, ds = loaded(trained)
    out = {"fp32": evaluate(model, ds, 4, progress=False, fast_path=False)}
    if runtime.bf16_flags():
        out["bf16"] = evaluate(model, ds, 4, progress=False, precision="bf16")
    return out


def loaded(trained):
    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config, load_model

    cfg = load_config(trained[0])
    return cfg, load_model(cfg, trained[1]), Builder(cfg).val_dataset


@needs_bf16
def test_bf16_keeps_the_trained_models_predictions(trained, evaluated):
    """bf16 against fp32 (the dygraph model) on the trained model: mIoU within 0.5 points, argmax agreement >= 99% of
    the pixels, logits within logits_bound; and bf16 did run (a predictor at bf16, logits not bitwise fp32's)."""
    fp32, bf16 = evaluated["fp32"], evaluated["bf16"]
    assert fp32["mIoU"] > 0.5 and min(fp32["class_iou"]) > 0.3, f"not trained enough: {fp32['class_iou']}"
    cfg, model, ds = loaded(trained)
    gap = 100 * abs(bf16["mIoU"] - fp32["mIoU"])
    assert gap <= 0.5, f"mIoU bf16 {bf16['mIoU']:.4f} against fp32 {fp32['mIoU']:.4f}: {gap:.3f} points"

    x = paddle.to_tensor(np.stack([ds[i]["img"] for i in range(len(ds))]))  # [8, 3, 32, 32]
    net = CompiledModel(model, precision="bf16")
    with paddle.no_grad():
        ref, out = model(x)[0].numpy(), net(x)[0].numpy()  # [8, 4, 32, 32]
    assert [p.precision for p in net.predictors.values()] == ["bf16"], f"compiled {net.predictors}"
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    assert agree >= 0.99, f"argmax agreement {100 * agree:.2f}% of {ref[:, 0].size} pixels"
    diff, scale = float(np.abs(out - ref).max()), float(np.abs(ref).max())
    bound = logits_bound(model.backbone.depth) * scale
    assert diff <= bound, f"max|bf16 - fp32| = {diff:.4f}, bound {bound:.4f} (logits up to {scale:.2f})"
    fp32_noise = compiled.CHECK_TOL * (1 + scale)  # an fp32 predictor's distance from the dygraph model
    assert diff > fp32_noise, f"max|bf16 - fp32| = {diff:.2e}, within fp32's {fp32_noise:.1e}: bf16 did not run"


def tiny(seed: int = 0) -> Segmenter:
    paddle.seed(seed)
    m = Segmenter(5, SegmenterViT(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2), {"name": "linear"})
    m.eval()
    return m


@needs_bf16
def test_bf16_compiles_each_size_on_first_sight():
    """With bf16 a size compiles at its first call, however small, and that call answers in bf16 already; a size the
    predictor cannot take (past max_sizes, past max_tokens) runs the fp32 dygraph model with one warning."""
    m = tiny()
    net = CompiledModel(m, precision="bf16", max_sizes=1, max_tokens=20)
    x = paddle.to_tensor(np.random.RandomState(0).rand(1, 3, 24, 40).astype("float32"))  # 15 tokens
    with paddle.no_grad():
        out, ref = net(x)[0].numpy(), m(x)[0].numpy()
        again = net(x)[0].numpy()
    assert list(net.predictors) == [(3, 24, 40)], f"compiled {list(net.predictors)} after one call"
    diff, scale = float(np.abs(out - ref).max()), float(np.abs(ref).max())
    assert compiled.CHECK_TOL * (1 + scale) < diff <= logits_bound(2) * scale, f"first call max|diff| {diff:.2e}"
    assert np.array_equal(out, again), "the compiling call and the next differ"
    for hw, why in (((32, 32), "1 input sizes are compiled"), ((40, 40), "25 tokens are more than")):
        y = paddle.to_tensor(np.random.RandomState(1).rand(1, 3, *hw).astype("float32"))
        with paddle.no_grad(), pytest.warns(UserWarning, match=f"bf16: Segmenter at .* fp32 dygraph model: .*{why}"):
            got = net(y)[0].numpy()
        with paddle.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")  # said once
            net(y)
            assert np.array_equal(got, m(y)[0].numpy()), f"{hw}: not the dygraph model's logits"


@needs_bf16
def test_a_graph_paddle_rejects_in_bf16_runs_onednn_in_fp32(tmp_path):
    """UPerNet's pyramid pooling has no oneDNN bf16 kernel (pool2d at adaptive sizes): its bf16 predictor says so in
    one warning and runs oneDNN in fp32 (not MKL, 0.9x slower on UPerNet), equal to the dygraph model."""
    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config
    from tests.demo_helpers import tiny_config

    paddle.seed(0)
    m = Builder(load_config(tiny_config(tmp_path, "upernet"))).model
    m.eval()
    net = CompiledModel(m, precision="bf16")
    x = paddle.to_tensor(np.random.RandomState(0).rand(1, 3, 64, 96).astype("float32"))
    said = r"rejected .* in bf16 \(NotFoundError: .*pool2d.*oneDNN in fp32"
    with paddle.no_grad(), pytest.warns(UserWarning, match=said):
        out = net(x)[0].numpy()
    pred = net.predictors[(3, 64, 96)]
    assert (pred.use_onednn, pred.precision) == (True, "fp32"), (pred.use_onednn, pred.precision)
    with paddle.no_grad():
        ref = m(x)[0].numpy()
        d = max(float(np.abs(o - ref).max()) for o in (out, net(x)[0].numpy()))
    assert d <= 1e-5, f"max|diff| {d:.2e} against the dygraph model"


ONEDNN_RUN = """
import sys
import numpy as np
from segmenter import deploy
from tests.test_precision import tiny

# as the compiled path exports: fused_attention asked for, bf16 taking its place
prefix = deploy.export(tiny(), sys.argv[1] + "/model", (32, 48), None, fused_attention=True, precision="bf16")
pred = deploy.create_predictor(prefix, 1)
pred(np.random.RandomState(2).rand(2, 3, 32, 48).astype("float32"))
print("precision", pred.precision)
"""


@needs_bf16
@pytest.mark.slow  # a subprocess (~4 s)
def test_bf16_export_attends_in_onednn_bf16_kernels(tmp_path):
    """An export at bf16 records it (create_predictor then runs bf16), and every product of its predictor, the
    attention's included, is a oneDNN bf16 kernel (ONEDNN_VERBOSE names each): paddle's fused attention kernel and
    `stack` have no bf16 kernel and would leave attention in fp32 (an sgemm `gemm_api`, or an f32 matmul)."""
    r = subprocess.run(
        [sys.executable, "-c", ONEDNN_RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, ONEDNN_VERBOSE="1", OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-800:]
    with open(tmp_path / f"model{deploy.DEPLOY_INFO}") as f:
        assert json.load(f)["precision"] == "bf16"
    assert "precision bf16" in r.stdout, r.stdout[-300:]
    runs = [s.split(",") for s in r.stdout.splitlines() if ",exec,cpu," in s]
    products = [(s[5], s[6], s[8].split()[0]) for s in runs if s[5] in ("matmul", "inner_product", "gemm_api")]
    # 2 blocks x (qkv, q k^T, attn v, proj, fc1, fc2) + the head + the upsampling's 2 matmuls
    assert len(products) >= 15, f"{len(products)} products: {products}"
    fp32 = [p for p in products if p[0] == "gemm_api" or "bf16" not in p[1]]
    assert not fp32, f"products not in bf16: {sorted(set(fp32))}"


@pytest.fixture()
def no_bf16_cpu(tmp_path, monkeypatch):
    """A /proc/cpuinfo without avx512_bf16 or amx_bf16 (an AVX-512 CPU before Cooper Lake)."""
    with open(runtime.CPUINFO) as f:
        real = f.read()
    fake = "".join(
        " ".join(w for w in line.split(" ") if w.strip() not in runtime.BF16_FLAGS)
        if line.startswith("flags")
        else line
        for line in real.splitlines(keepends=True)
    )
    if "flags" not in fake:
        fake += "flags\t\t: fpu sse2 avx2 avx512f\n"
    path = tmp_path / "cpuinfo"
    path.write_text(fake.replace("model name\t:", "model name\t: Fake Skylake-SP", 1))
    monkeypatch.setattr(runtime, "CPUINFO", str(path))
    assert runtime.bf16_flags() == ()
    return path


@pytest.mark.parametrize("tool", ["val", "predict", "export", "demo"])
def test_a_cpu_without_bf16_is_one_line(no_bf16_cpu, trained, tool, capsys, monkeypatch):
    """--precision bf16 where the CPU has no bf16 arithmetic: the tool stops with one error line naming the option, the
    flags it lacks and fp32, before loading anything."""
    import segmenter.demo

    monkeypatch.setattr(segmenter.demo, "serve", lambda *a: pytest.fail("the demo started serving"))
    argv = {
        "val": ["--config", trained[0], "--model_path", trained[1]],
        "predict": ["--config", trained[0], "--model_path", trained[1], "--image_path", trained[1]],
        "export": ["--config", trained[0], "--save", os.path.join(trained[1], "e")],
        "demo": ["--config", trained[0], "--weights", trained[1]],
    }[tool]
    code = tool_exit_code(f"{tool}.py", argv + ["--precision", "bf16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, f"exit {code}: {err}"
    for part in ("error: argument --precision: bf16 needs", "avx512_bf16 or amx_bf16", "Fake Skylake-SP", "fp32"):
        assert part in err, f"{part!r} not in: {err}"


def test_without_bf16_the_apis_say_so(no_bf16_cpu, trained, tmp_path):
    """The same refusal, naming where the bf16 came from, from the YAML's test_config, both Inferencers, a predictor
    and the demo's toggle; fp16 is refused everywhere (paddle has no fp16 CPU kernels)."""
    from segmenter import Inferencer
    from segmenter.demo import Demo, DemoError
    from segmenter.engine.run import load_config, test_kwargs
    from segmenter.pytorch.inference import Inferencer as TwinInferencer

    cfg = load_config(trained[0])
    cfg.dic["test_config"] = {"precision": "bf16"}
    with pytest.raises(ValueError, match=rf"config {trained[0]}: test_config.precision bf16 needs .* Fake Skylake"):
        test_kwargs(cfg, {})
    says = {"bf16": "precision bf16 needs a CPU with bf16", "fp16": "precision fp16: there is no fp16 inference"}
    for cls in (Inferencer, TwinInferencer):
        for value in ("bf16", "fp16"):
            with pytest.raises(ValueError, match=says[value]):
                cls(trained[0], precision=value)
    prefix = deploy.export(tiny(), str(tmp_path / "m"), (32, 32), precision="bf16")
    with pytest.raises(ValueError, match=r"precision \(recorded in .*m\.deploy\.json\) bf16 needs"):
        deploy.create_predictor(prefix)
    demo = Demo(*trained)
    assert demo.info()["bf16"] == {"available": False, "default": False, "why": demo.bf16_why}
    assert "the bf16 toggle: bf16 needs a CPU" in demo.bf16_why, demo.bf16_why
    with pytest.raises(DemoError, match="bf16 needs a CPU"):
        demo.predict(demo.sample_png(next(iter(demo.samples))), bf16=True)


def test_bf16_needs_the_compiled_path(monkeypatch):
    """bf16 is the predictor's: with the fast path off it is a contradiction, said in one line naming both."""
    monkeypatch.setattr(runtime, "bf16_flags", lambda: ("avx512_bf16",))
    with pytest.raises(ValueError, match=r"precision bf16 runs through the compiled path, which --no_fast_path"):
        inference_model(tiny(), False, "bf16")
    with pytest.raises(ValueError, match="is not one of fp32, bf16"):
        inference_model(tiny(), None, "fp8")


@needs_bf16
def test_the_twin_runs_bf16_under_autocast(trained):
    """The twin's Inferencer at bf16 (torch.autocast): its probabilities move off fp32's by bf16's rounding, and its
    classes stay (>= 99% of the pixels), as the Paddle predictor's do."""
    from segmenter.pytorch.inference import Inferencer as TwinInferencer

    ds = loaded(trained)[2]
    images = [ds.sample(i)[0] for i in range(len(ds))]
    twin = TwinInferencer(*trained, precision="bf16")
    b = twin(images, return_probs=True)
    twin.precision = "fp32"
    a = twin(images, return_probs=True)
    moved = max(float(np.abs(x.probs - y.probs).max()) for x, y in zip(a, b))
    assert moved > 1e-4, f"the twin's bf16 probabilities are within {moved:.1e} of fp32's: autocast did not run"
    agree = np.mean([np.mean(x.pred == y.pred) for x, y in zip(a, b)])
    assert agree >= 0.99, f"the twin's bf16 against its fp32: argmax agreement {100 * agree:.2f}%"


@needs_bf16
def test_the_demo_pages_bf16_toggle(trained):
    """The page's bf16 toggle reaches the model: a request with bf16=1 answers the Inferencer's bf16 prediction, one
    without it the fp32 one; the page has the checkbox and sends it."""
    from segmenter import Inferencer
    from segmenter.demo import Demo, DemoServer
    from segmenter.demo.browser import data_url_image, free_port
    from segmenter.demo.server import STATIC

    demo = Demo(*trained)
    assert demo.info()["bf16"] == {"available": True, "default": False, "why": ""}
    ds = loaded(trained)[2]
    img = ds.sample(3)[0]
    server = DemoServer(demo, "127.0.0.1", free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = {}
        for flag in (0, 1):
            url = f"http://127.0.0.1:{server.server_address[1]}/api/predict?bf16={flag}&name=x"
            req = urllib.request.Request(url, data=png(img), method="POST")
            with urllib.request.urlopen(req, timeout=60) as r:
                got[flag] = json.loads(r.read())
    finally:
        server.shutdown()
        server.server_close()
    assert [got[0]["precision"], got[1]["precision"]] == ["fp32", "bf16"], [g["precision"] for g in got.values()]
    seg = Inferencer(*trained)
    for flag, precision in ((0, "fp32"), (1, "bf16")):
        seg.precision = precision
        want = seg(img).pred
        diff = int((data_url_image(got[flag]["mask"]) != want).sum())
        assert diff == 0, f"bf16={flag}: {diff} pixels differ from Inferencer(precision={precision!r})"
    assert demo.seg.precision == "fp32", "a bf16 request left the model in bf16"
    with open(os.path.join(STATIC, "index.html")) as f, open(os.path.join(STATIC, "demo.js")) as g:
        page, script = f.read(), g.read()
    assert 'id="bf16"' in page and "bf16=${on(" in script, "the page has no bf16 checkbox wired to the request"


def png(img: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@needs_bf16
@pytest.mark.slow  # three tool runs (~6 s)
def test_the_tools_take_precision(trained, evaluated, tmp_path, capsys):
    """val.py reads test_config.precision from the YAML and says it runs bf16, with the metrics of evaluate at bf16;
    predict.py --precision bf16 writes its masks; export.py --precision bf16 records it and checks the predictor."""
    cfg16 = tmp_path / "bf16.yml"
    cfg16.write_text(f"_base_: {trained[0]}\ntest_config: {{precision: bf16}}\n")
    assert tool_exit_code("val.py", ["--config", str(cfg16), "--model_path", trained[1]]) == 0
    out = capsys.readouterr().out
    ds, want = loaded(trained)[2], evaluated["bf16"]["mIoU"]
    assert "in bf16 (oneDNN's bf16 predictor" in out and f"mIoU {want:.4f}" in out, out[-600:]
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    (img_dir / "a.png").write_bytes(png(ds.sample(0)[0]))
    argv = ["--config", trained[0], "--model_path", trained[1], "--image_path", str(img_dir)]
    assert tool_exit_code("predict.py", argv + ["--save_dir", str(tmp_path / "p"), "--precision", "bf16"]) == 0
    assert "in bf16" in capsys.readouterr().out and (tmp_path / "p" / "pseudo_color" / "a.png").is_file()
    argv = ["--config", trained[0], "--weights", trained[1], "--size", "32", "32", "--save", str(tmp_path / "e" / "m")]
    assert tool_exit_code("export.py", argv + ["--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "the bf16 predictor on this CPU" in out and "argmax agreement" in out, out[-600:]
    assert deploy.create_predictor(str(tmp_path / "e" / "m")).precision == "bf16"

"""Weights by URL (issue 27 item 7): every place a weights path enters takes an http(s) URL, downloaded once into
the cache (SEGMENTER_CACHE), with progress, checked (Content-Length, #sha256=), locked between processes, then read
by the safe strict loaders; each failure is one `error:` line and leaves nothing a rerun would trust.
A local server (tests/url_server.py) on 127.0.0.1 stands in for the internet."""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading

import numpy as np
import paddle
import pytest

from segmenter.convert.download import cache_path, fetch_weights
from tests.engine_helpers import TINY_YAML
from tests.helpers import tool_exit_code
from tests.url_server import Route, Server, closed_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "/dygraph/ade20k/tiny_model/model.pdparams"  # laid out as PaddleSeg's model URLs
ARCHIVE = "/dygraph/pretrained_models/vit_tiny_patch8_32.tar.gz"  # as PaddleSeg's pretrained archives


def _pdparams_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    paddle.save(state, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The server with a tiny whole model (our layout) and a PaddleSeg-style .tar.gz of an ImageNet ViT backbone
    (bare keys plus its classifier head), and the config both belong to."""
    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config

    tmp = tmp_path_factory.mktemp("download")
    config = tmp / "tiny.yml"
    config.write_text(TINY_YAML)
    paddle.seed(3)
    model = Builder(load_config(str(config))).model
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    backbone = {k: v + np.float32(0.5) for k, v in backbone.items()}  # not the model's: a load shows which it read
    backbone.update({"head.weight": np.zeros((32, 1000), np.float32), "head.bias": np.zeros(1000, np.float32)})
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as t:
        data = _pdparams_bytes(backbone)
        info = tarfile.TarInfo("vit_tiny_patch8_32/model.pdparams")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    body = _pdparams_bytes(state)
    with Server() as server:
        server.routes[MODEL] = Route(body)
        server.routes[ARCHIVE] = Route(tar.getvalue())
        yield {"server": server, "config": str(config), "state": state, "backbone": backbone, "body": body, "tmp": tmp}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGMENTER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(tool: str, argv: list, capsys) -> tuple:
    capsys.readouterr()
    code = tool_exit_code(f"{tool}.py", argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _left(cache) -> list:
    """Every file in the cache but the lock files (which hold nothing)."""
    return sorted(
        os.path.relpath(os.path.join(d, n), cache)
        for d, _, names in os.walk(cache)
        for n in names
        if not n.endswith(".lock")
    )


def test_val_reads_a_model_url_once_then_from_the_cache(served, cache, capsys):
    server, url = served["server"], served["server"].url(MODEL)
    before = server.gets.get(MODEL, 0)
    code, out, err = _run("val", ["--config", served["config"], "--model_path", url], capsys)
    assert code == 0 and "[EVAL]" in out, err[-2000:]
    path = cache_path(url)
    assert f"download: {url} -> {path}" in err and "download: done" in err, err[-2000:]
    with open(path, "rb") as f:
        assert f.read() == served["body"], "the cached file is not the served one"
    sha = hashlib.sha256(served["body"]).hexdigest()
    code, out, err = _run("val", ["--config", served["config"], "--weights", f"{url}#sha256={sha}"], capsys)
    assert code == 0 and "download:" not in err, err[-2000:]
    assert server.gets[MODEL] - before == 1, f"{server.gets[MODEL] - before} downloads of one URL"


def test_inferencers_and_backbone_pretrained_take_urls(served, cache):
    import segmenter.models as pm
    import segmenter.pytorch as tm
    from segmenter.inference import Inferencer
    from segmenter.pytorch.inference import Inferencer as TorchInferencer

    url = served["server"].url(MODEL)
    for name, seg, transpose in (
        ("Paddle Inferencer", Inferencer(served["config"], url), False),
        ("PyTorch Inferencer", TorchInferencer(served["config"], url), True),
    ):
        got = {k: v.detach().numpy() if hasattr(v, "detach") else v.numpy() for k, v in seg.model.state_dict().items()}
        key = "backbone.blocks.1.mlp.fc2.weight"
        want = served["state"][key].T if transpose else served["state"][key]
        assert np.array_equal(got[key], want), f"{name}: max|diff|={np.abs(got[key] - want).max():.3e}"
    archive = served["server"].url(ARCHIVE)
    kw = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2, norm_eps=1e-6)
    for name, vit, transpose in (
        ("Paddle SegmenterViT", pm.SegmenterViT(pretrained=archive, **kw), False),
        ("PyTorch SegmenterViT", tm.SegmenterViT(pretrained=archive, **kw), True),
    ):
        got = {k: v.detach().numpy() if hasattr(v, "detach") else v.numpy() for k, v in vit.state_dict().items()}
        for key in ("pos_embed", "blocks.0.attn.qkv.weight", "norm.bias"):
            want = served["backbone"][key].T if transpose and key.endswith("qkv.weight") else served["backbone"][key]
            assert np.array_equal(got[key], want), f"{name} {key}: max|diff|={np.abs(got[key] - want).max():.3e}"
    left = _left(cache)
    member = os.path.relpath(os.path.join(cache_path(archive)[: -len(".tar.gz")], "model.pdparams"), cache)
    assert member in left and not any(p.endswith(".tar.gz") for p in left), left


@pytest.mark.parametrize("case", ["404", "truncated", "checksum", "no network"])
def test_a_failed_download_is_one_error_line_and_leaves_nothing(served, cache, case, capsys):
    server = served["server"]
    path = f"/case/{case.replace(' ', '_')}/model.pdparams"
    if case != "404":
        server.routes[path] = Route(served["body"], truncate=1 if case == "truncated" else 0)
    url = server.url(path)
    if case == "checksum":
        url += "#sha256=" + "0" * 64
    if case == "no network":
        url = f"http://127.0.0.1:{closed_port()}{path}"
    code, out, err = _run("val", ["--config", served["config"], "--model_path", url], capsys)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    culprit = {
        "404": "404",
        "truncated": "broke off",
        "checksum": "does not match",
        "no network": f"cannot reach {url.split('/')[2]}: download {url} yourself and pass the file",
    }[case]
    assert code == 1 and len(errors) == 1 and culprit in errors[0] and "Traceback" not in err, err[-2000:]
    assert _left(cache) == [], f"{case}: left in the cache: {_left(cache)}"
    if case == "truncated":  # a rerun downloads again (the first request was the broken one) and succeeds
        code, out, err = _run("val", ["--config", served["config"], "--model_path", url], capsys)
        assert code == 0 and server.gets[path] == 2, (server.gets[path], err[-2000:])


# Each process loads segmenter/convert/download.py alone (it imports nothing of the package, and `import segmenter`
# would cost seconds of Paddle), says it is ready, and starts fetching when the test says go: both ask at once.
TWO = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("download", sys.argv[1])
download = importlib.util.module_from_spec(spec)
spec.loader.exec_module(download)
open(sys.argv[3] + ".ready", "w").close()
while not os.path.exists(sys.argv[4]):
    time.sleep(0.01)
print(download.fetch_weights(sys.argv[2]))
"""


def test_two_processes_fetching_one_url_download_it_once(served, cache, tmp_path):
    server = served["server"]
    body = os.urandom(1 << 20)  # 16 chunks of 64 KiB, 0.1 s apart: the first holds the lock ~1.6 s
    server.routes["/slow/model.pdparams"] = Route(body, delay=0.1)
    url = server.url("/slow/model.pdparams")
    env = {**os.environ, "SEGMENTER_CACHE": str(cache)}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                TWO,
                os.path.join(ROOT, "segmenter", "convert", "download.py"),
                url,
                str(tmp_path / f"p{i}"),
                go,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i in range(2)
    ]
    for i in range(2):
        for _ in range(3000):  # up to 30 s for an import on a loaded machine
            if (tmp_path / f"p{i}.ready").exists() or procs[i].poll() is not None:
                break
            threading.Event().wait(0.01)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-800:] for o in outs]
    paths = {o[0].decode().strip() for o in outs}
    assert paths == {cache_path(url)}, paths
    with open(cache_path(url), "rb") as f:
        assert f.read() == body, "the file two processes fetched is not the served one"
    assert server.gets["/slow/model.pdparams"] == 1, f"{server.gets['/slow/model.pdparams']} downloads"
    assert any("waiting for another process" in o[1].decode() for o in outs), [o[1].decode() for o in outs]


def test_progress_is_lines_in_a_log_and_a_bar_on_a_terminal(served, cache, monkeypatch):
    server = served["server"]
    server.routes["/big/a.pdparams"] = Route(bytes(3 << 20))
    server.routes["/big/b.pdparams"] = Route(bytes(3 << 20))
    lines = []
    fetch_weights(server.url("/big/a.pdparams"), log=lines.append)
    steps = [ln for ln in lines if "%" in ln]
    assert 3 <= len(steps) <= 11 and "100%" in steps[-1] and "ETA" in steps[-1], lines

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    fetch_weights(server.url("/big/b.pdparams"))
    text = term.getvalue()
    assert "\r" in text and "download:" in text and "3.00M" in text, text[-500:]


@pytest.mark.slow  # six tool runs (an export, a parity run)
@pytest.mark.parametrize("tool", ["predict", "export", "attention", "convert", "parity", "demo"])
def test_every_tool_takes_weights_by_url(served, cache, tool, tmp_path, capsys):
    url, config = served["server"].url(MODEL), served["config"]
    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(image)
    if tool == "demo":  # the page's model: Demo is what tools/demo.py serves
        from segmenter.demo import Demo

        demo = Demo(config, url)
        key = "decoder.head.weight"
        got = demo.model.state_dict()[key].numpy()
        assert np.array_equal(got, served["state"][key]), f"demo: max|diff|={np.abs(got - served['state'][key]).max()}"
        return
    argv = {
        "predict": ["--config", config, "--model_path", url, "--image_path", str(image), "--save_dir", str(tmp_path)],
        "export": ["--config", config, "--weights", url, "--size", "32", "32", "--save", str(tmp_path / "m")],
        "attention": [
            "--config",
            config,
            "--model_path",
            url,
            "--image",
            str(image),
            "--layer",
            "1",
            "--save",
            str(tmp_path / "a.png"),
        ],
        "convert": [url, str(tmp_path / "c.safetensors")],
        "parity": ["--config", config, "--weights", url, "--size", "32", "32"],
    }[tool]
    code, out, err = _run(tool, argv, capsys)
    assert code == 0, f"tools/{tool}.py with a URL: exit {code}\n{out[-800:]}\n{err[-1500:]}"

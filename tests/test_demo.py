"""The demo page's server side without a browser (tests/test_demo_browser.py drives the page in Chromium): the
prediction equals the Inferencer's, the attention equals attention_maps, bad uploads get one clear sentence, the
HTTP answers never carry a traceback, and the page loads nothing from outside."""

import io
import json
import os
import re
import struct
import threading
import urllib.error
import urllib.request
import zlib

import matplotlib
import numpy as np
import pytest
from PIL import Image

from segmenter.demo import Demo, DemoError, DemoServer
from segmenter.demo.browser import data_url_image, free_port
from segmenter.demo.server import STATIC
from segmenter.visualize.attention import attention_maps
from tests.demo_helpers import ROOT, odd_image, random_weights, tiny_config


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """name -> (config, weights) of the tiny models."""
    tmp = tmp_path_factory.mktemp("demo")
    out = {}
    for name in ("linear", "mask", "upernet"):
        cfg = tiny_config(tmp, name)
        out[name] = cfg, random_weights(cfg, str(tmp / f"{name}.pdparams"), seed=len(name))
    return out


@pytest.fixture(scope="module")
def demos(made):
    cache = {}

    def get(name, framework="paddle"):
        if (name, framework) not in cache:
            cache[name, framework] = Demo(*made[name], framework)
        return cache[name, framework]

    return get


CASES = [
    ("linear", "paddle", None, None),
    ("linear", "paddle", False, True),
    ("mask", "paddle", True, False),
    ("mask", "paddle", False, True),
    ("upernet", "paddle", None, None),
    ("linear", "torch", True, True),
    ("upernet", "torch", None, None),
]


@pytest.mark.parametrize("name,framework,slide,flip", CASES)
def test_prediction_equals_the_inferencer(made, demos, name, framework, slide, flip):
    if framework == "torch":
        from segmenter.pytorch.inference import Inferencer
    else:
        from segmenter.inference import Inferencer
    img = odd_image(75, 103, seed=2)
    out = demos(name, framework).predict(png_bytes(img), slide, flip)
    kw = {"is_slide": slide, "flip_horizontal": flip}
    want = Inferencer(*made[name], **{k: v for k, v in kw.items() if v is not None})(img).pred
    got = data_url_image(out["mask"])
    assert got.shape == want.shape == (75, 103), f"mask {got.shape}, Inferencer {want.shape}"
    diff = int((got != want).sum())
    assert diff == 0, f"{name} ({framework}, slide={slide}, flip={flip}): {diff} pixels differ from the Inferencer"
    counts = np.bincount(want.ravel())
    assert [a["pixels"] for a in out["areas"]] == sorted(counts[counts > 0], reverse=True), out["areas"]
    assert out["areas"][0]["name"] == demos(name, framework).names[int(counts.argmax())]
    assert np.array_equal(data_url_image(out["image"]), img), "the image shown is not the upload"


@pytest.mark.parametrize(
    "name,framework,slide",
    [("linear", "paddle", True), ("mask", "paddle", True), ("mask", "torch", False), ("upernet", "paddle", None)],
)
def test_attention_equals_attention_maps(demos, name, framework, slide):
    d = demos(name, framework)
    img = odd_image(75, 103, seed=3)
    out = d.predict(png_bytes(img), slide, None)
    got = d.attention(out["id"], 60, 90, 0)
    x, _ = d.seg.preprocess(img)  # the network input (the mask config resizes it: ResizeByShort)
    p = (60 * x.shape[1] // 75, 90 * x.shape[2] // 103)
    kw = {"crop_size": d.base_kwargs["crop_size"], "stride": d.base_kwargs["stride"]} if out["slide"] else {}
    m = attention_maps(d.model, x, 0, p, **kw)
    assert got["box"] == list(m.box) and got["query"] == list(m.query), f"{got['box']} {got['query']} vs {m}"
    assert len(got["heads"]) == m.heads.shape[0]
    for k, head in enumerate(got["heads"]):
        lo, hi = float(m.heads[k].min()), float(m.heads[k].max())
        assert abs(head["min"] - lo) <= 1e-6 and abs(head["max"] - hi) <= 1e-6, f"head {k}: {head['max']} vs {hi}"
        want = (matplotlib.colormaps["viridis"]((m.heads[k] - lo) / (hi - lo))[..., :3] * 255).astype(np.uint8)
        d8 = np.abs(data_url_image(head["png"]).astype(int) - want).max()
        assert d8 <= 1, f"head {k} picture differs from the map by {d8} levels"
    if m.class_masks is None:
        assert got["classes"] == []
    else:
        area = np.bincount(m.class_masks.argmax(0).ravel(), minlength=m.class_masks.shape[0])
        want_ids = [int(c) for c in np.argsort(-area, kind="stable")[:8]]
        assert [c["id"] for c in got["classes"]] == want_ids
        mask = data_url_image(got["classes"][0]["mask"])
        want = (matplotlib.colormaps["magma"](m.class_masks[want_ids[0]])[..., :3] * 255).astype(np.uint8)
        assert np.abs(mask.astype(int) - want).max() <= 1, "class mask picture is not the class's probability"


def png_header(w: int, h: int) -> bytes:
    """A PNG signature and IHDR claiming w x h pixels (no pixel data): what a decompression bomb starts with."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", b"")


def test_bad_uploads_say_what_to_do(made):
    d = Demo(*made["linear"], max_side=256, max_bytes=200_000, max_tokens=200, max_attn_bytes=10_000)
    good = png_bytes(odd_image(75, 103))
    cases = [
        (b"this is a text file", "not an image PIL can read: pick a PNG, JPEG"),
        (b"", "is empty"),
        (good[: len(good) // 2], r"could not be decoded .*truncated or damaged"),
        (png_bytes(np.zeros((4, 300, 3), np.uint8)), r"is 300x4 px; the limit is 256 px on the longest side"),
        (
            png_header(30000, 30000),
            r"is too large \(Image size \(900000000 pixels\) exceeds .*\); the limit is "
            r"256 px on the longest side",
        ),
        (png_header(300, 20), r"is 300x20 px; the limit is 256 px"),
        (b"x" * 200_001, r"is 195.3 KiB; the limit is 195.3 KiB \(--max_mb\)"),
        (
            png_bytes(odd_image(200, 200)),
            r"this 200x200 px input is 625 patches .* limit is 200 "
            r"\(--max_tokens\): turn on slice",
        ),
    ]
    for data, msg in cases:
        with pytest.raises(DemoError, match=msg):
            d.predict(data, slide=False)
    out = d.predict(good, slide=True)  # 64 px windows: 64 patches each
    with pytest.raises(
        DemoError,
        match=r"attention of this 64x64 px window takes 33.0 KiB \(1 layers x 2 heads x 65"
        r"\^2 tokens\); the limit is 9.8 KiB \(--max_attn_gb\)",
    ):
        d.attention(out["id"], 10, 10)
    d.max_attn_bytes = 1 << 30
    with pytest.raises(DemoError, match=r"pixel \(y=75, x=0\) is outside the 103x75 image"):
        d.attention(out["id"], 75, 0)
    with pytest.raises(DemoError, match=r"layer 3: the encoder has 1 blocks \(0..0\)"):
        d.attention(out["id"], 5, 5, 3)
    with pytest.raises(DemoError, match="no longer held by the server"):
        d.attention("999", 5, 5)


@pytest.mark.parametrize("framework", ["paddle", "torch"])
def test_class_names_come_from_the_config(made, tmp_path, framework):
    """The legend's names are the config's own: a dataset section's class_names_file, read by the Inferencer."""
    (tmp_path / "names.txt").write_text("".join(f"thing {i}\n" for i in range(4)))
    cfg = tmp_path / "named.yml"
    cfg.write_text(f"_base_: {made['linear'][0]}\nval_dataset:\n  class_names_file: {tmp_path / 'names.txt'}\n")
    d = Demo(str(cfg), made["linear"][1], framework)
    assert d.names == [f"thing {i}" for i in range(4)], d.names


@pytest.fixture()
def served(made):
    demo = Demo(*made["linear"], max_bytes=300_000)
    server = DemoServer(demo, "127.0.0.1", free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield demo, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def ask(url: str, data: bytes = None, ctype: str = "application/octet-stream"):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_http_answers_carry_a_sentence_never_a_traceback(served, monkeypatch):
    demo, base = served
    code, page = ask(base + "/")
    assert code == 200 and b'<script src="/demo.js">' in page
    code, info = ask(base + "/api/info")
    info = json.loads(info)
    assert info["names"] == ["background", "disc", "square", "triangle"] and info["slide"]["available"], info
    assert ask(base + "/samples/shapes_96.png")[0] == 200
    code, body = ask(base + "/api/predict?name=notes.txt", b"not an image")
    assert code == 400 and "notes.txt is not an image" in json.loads(body)["error"], body
    code, body = ask(base + "/api/predict", b"x" * 300_001)
    assert code == 400 and "is 293.0 KiB; the limit is 293.0 KiB" in json.loads(body)["error"], body
    code, body = ask(base + "/api/predict?slide=1&flip=0", png_bytes(odd_image(40, 50)))
    out = json.loads(body)
    assert code == 200 and out["slide"] is True and out["flip"] is False and out["size"] == [40, 50]
    click = json.dumps({"id": out["id"], "y": 3, "x": 45}).encode()
    code, body = ask(base + "/api/attention", click, "application/json")
    assert code == 200 and json.loads(body)["query"] == [0, 5], body
    code, body = ask(base + "/api/attention", b'{"id": 1}', "application/json")
    assert code == 400 and "needs JSON" in json.loads(body)["error"]
    assert ask(base + "/nope")[0] == 404

    def broken(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(demo, "predict", broken)
    code, body = ask(base + "/api/predict", png_bytes(odd_image(40, 50)))
    err = json.loads(body)["error"]
    assert code == 500 and "RuntimeError: boom)" in err and "Traceback" not in err and "\n" not in err, err


def test_the_page_loads_nothing_from_outside():
    for f in os.listdir(STATIC):
        text = open(os.path.join(STATIC, f)).read()
        found = re.findall(r"(?:https?:)?//[\w.-]+\.\w+/|@import|url\(", text)
        assert not found, f"static/{f} refers to something outside the demo server: {found}"


def test_front_door(made, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_tool", os.path.join(ROOT, "tools", "demo.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert len(open(spec.origin).read().splitlines()) < 70, "tools/demo.py should stay a thin front door"
    import segmenter.demo

    seen = {}
    monkeypatch.setattr(segmenter.demo, "serve", lambda demo, host, port: seen.update(host=host, port=port))
    assert (
        tool.run_cli(
            tool.main,
            tool.parse_args(
                ["--config", made["linear"][0], "--weights", made["linear"][1], "--host", "0.0.0.0", "--port", "0"]
            ),
        )
        == 0
    )
    assert seen == {"host": "0.0.0.0", "port": 0}
    assert "warning: --host 0.0.0.0 serves the demo to other machines too" in capsys.readouterr().err
    assert tool.run_cli(tool.main, tool.parse_args(["--config", "nope.yml", "--weights", "none"])) == 1
    assert "error: config nope.yml does not exist" in capsys.readouterr().err

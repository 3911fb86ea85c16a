"""The demo page's server side without a browser (tests/test_demo_browser.py drives the page in Chromium): the
prediction equals the Inferencer's, the attention equals attention_maps, bad uploads get one clear sentence, the
HTTP answers never carry a traceback, and the page loads nothing from outside."""

import ctypes
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import matplotlib
import numpy as np
import pytest
from PIL import Image

from segmenter.demo import Demo, DemoError, DemoServer, serve
from segmenter.demo.browser import data_url_image, free_port
from segmenter.demo.server import STATIC
from segmenter.visualize.attention import attention_maps
from tests.demo_helpers import ROOT, MixedLoad, odd_image, process_tree_mb, random_weights, tiny_config


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


@pytest.fixture()
def fresh(made):
    """A linear model's Demo of its own (nothing uploaded yet)."""
    return Demo(*made["linear"])


def test_clicks_reach_the_newest_uploads_and_the_oldest_go(fresh, monkeypatch):
    """The server keeps the newest KEEP_IMAGES uploads for clicks, evicting the oldest; each id clicks its own."""
    from segmenter.demo import app

    d = fresh
    n = app.KEEP_IMAGES + 2
    ids = [d.predict(png_bytes(odd_image(40 + k, 50, seed=k)), False, False)["id"] for k in range(n)]
    held = [i for i in ids if i in d.images]
    assert held == ids[2:], f"held {held} of the uploads {ids}: expected all but the two oldest"
    for k in (0, 1):
        with pytest.raises(DemoError, match=f"no longer held by the server \\(it keeps the last {app.KEEP_IMAGES}"):
            d.attention(ids[k], 5, 5)
    for k in range(2, n):  # the last row of upload k: outside every older (shorter) upload
        out = d.attention(ids[k], 39 + k, 49)
        assert out["box"] == [0, 0, 40 + k, 50], f"upload {k} (id {ids[k]}) clicked on an image of {out['box']}"
    # past KEEP_MB the oldest go too, and the newest stays even when it alone is larger
    monkeypatch.setattr(app, "KEEP_MB", 3 * 60 * 70 * 3 / 2**20)  # three 60x70 uploads
    ids = [d.predict(png_bytes(odd_image(60, 70, seed=k)), False, False)["id"] for k in range(5)]
    held = [i for i in ids if i in d.images]
    assert held == ids[-3:], f"held {held} of {ids}, expected the newest three"
    big = d.predict(png_bytes(odd_image(100, 120)), False, False)["id"]
    assert list(d.images) == [big], f"held {list(d.images)}, expected only the newest {big}"


def test_a_click_is_scaled_by_its_own_axis(made, tmp_path):
    """Val transforms that change the aspect ratio (Resize to 96x48): a click at image pixel (y, x) queries the
    network-input pixel (y * h / H, x * w / W), each axis by its own ratio."""
    cfg = tmp_path / "squashed.yml"
    cfg.write_text(
        f"_base_: {made['mask'][0]}\nval_dataset:\n  transforms:\n    - {{type: Resize, target_size: [96, 48]}}\n"
        "    - {type: Normalize, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}\n"
    )
    d = Demo(str(cfg), made["mask"][1])
    img = odd_image(75, 103, seed=4)  # H 75 -> h 48 (0.64), W 103 -> w 96 (0.93)
    out = d.predict(png_bytes(img), False, False)
    x, _ = d.seg.preprocess(img)
    assert x.shape[1:] == (48, 96), x.shape
    for y, xx in ((70, 20), (10, 100)):
        want = (y * 48 // 75, xx * 96 // 103)  # (44, 18) and (6, 93)
        got = d.attention(out["id"], y, xx, 0)
        m = attention_maps(d.model, x, 0, want)
        assert got["pixel"] == list(want) and got["query"] == list(m.query), (
            f"click (y {y}, x {xx}) queried network pixel {got['pixel']} patch {got['query']}, expected {want} "
            f"patch {m.query}"
        )
        assert abs(got["heads"][0]["max"] - float(m.heads[0].max())) <= 1e-6, (got["heads"][0], m.heads[0].max())


HOLD_GIL = """
import json, sys, threading, time, urllib.request
base, png, seconds = sys.argv[1], open(sys.argv[2], "rb").read(), float(sys.argv[3])
post = {}
def upload():
    t = time.time()
    with urllib.request.urlopen(urllib.request.Request(base + "/api/predict", data=png), timeout=120) as r:
        post.update(status=r.status, start=t, end=time.time())
threading.Thread(target=upload).start()
gets, end = [], time.time() + seconds
while time.time() < end:  # the info and the page, in turn, while the upload is in flight
    path = "/api/info" if len(gets) % 2 == 0 else "/"
    t = time.time()
    with urllib.request.urlopen(base + path, timeout=120) as r:
        r.read()
        gets.append((path, r.status, t, time.time()))
    time.sleep(0.1)
while not post:
    time.sleep(0.05)
print(json.dumps({"post": post, "gets": gets}))
"""


def test_a_slow_inference_blocks_neither_the_info_nor_the_page(demos, tmp_path, monkeypatch):
    """While the model runs a forward that holds Python's GIL (as paddle's inference predictor does for its whole
    run), /api/info and the page answer at once: they are served by another process than the model's. The client
    is a process of its own too (this one is the model's)."""
    demo = demos("linear")
    hold_s, held = 2.0, {}
    usleep = ctypes.PyDLL(None).usleep  # a C call that keeps the GIL, as predictor.run does
    probs = demo.seg._probs

    def slow_probs(x):
        held["start"] = time.time()
        usleep(int(hold_s * 1e6))
        held["end"] = time.time()
        return probs(x)

    monkeypatch.setattr(demo.seg, "_probs", slow_probs)
    server = DemoServer(demo, "127.0.0.1", free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "up.png").write_bytes(png_bytes(odd_image(40, 50)))
        base = f"http://127.0.0.1:{server.server_address[1]}"
        run = subprocess.run(
            [sys.executable, "-I", "-c", HOLD_GIL, base, str(tmp_path / "up.png"), str(hold_s + 0.5)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["post"]["status"] == 200 and out["post"]["end"] >= held["end"], (out["post"], held)
    during = [(p, code, b - a) for p, code, a, b in out["gets"] if held["start"] <= a and a + 1.0 <= held["end"]]
    slowest = max(during, key=lambda g: g[2], default=None)
    assert slowest and all(code == 200 for _, code, _ in during) and slowest[2] < 1.0, (
        f"{slowest[0]} took {slowest[2]:.2f} s while an inference was in flight: {during}" if slowest else out
    )
    assert len(during) >= 3 and {p for p, _, _ in during} == {"/api/info", "/"}, (
        f"{len(during)} requests for the info or the page started while the model held the GIL for {hold_s} s "
        f"({out['gets']}, held {held})"
    )


def test_requests_past_the_queue_cap_are_refused_at_once(demos, monkeypatch):
    """More than max_waiting requests queued for the model: the next is answered 503 with a sentence, at once."""
    demo = demos("linear")
    probs, gate = demo.seg._probs, threading.Event()
    monkeypatch.setattr(demo.seg, "_probs", lambda x: (gate.wait(20), probs(x))[1])  # busy until the gate opens
    server = DemoServer(demo, "127.0.0.1", free_port(), max_waiting=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base, data, answers = f"http://127.0.0.1:{server.server_address[1]}", png_bytes(odd_image(40, 50)), []
    try:
        posts = [threading.Thread(target=lambda: answers.append(ask(base + "/api/predict", data))) for _ in range(2)]
        for t in posts:  # one in the model, one waiting
            t.start()
            time.sleep(0.5)
        t0 = time.perf_counter()
        code, body = ask(base + "/api/predict", data)
        took = time.perf_counter() - t0
        gate.set()
        for t in posts:
            t.join(60)
    finally:
        gate.set()
        server.shutdown()
        server.server_close()
    assert code == 503 and "1 requests are waiting" in json.loads(body)["error"] and took < 2, (code, body, took)
    assert sorted(c for c, _ in answers) == [200, 200], [c for c, _ in answers]
    assert server.page.poll() is not None, "the page's process outlived server_close()"


@pytest.mark.slow
def test_memory_stays_flat_under_a_long_mixed_load(demos):
    """A small version of benchmarks/long_runs.py's demo case: 8 clients, 240 requests of every kind (uploads of
    random sizes with slice and flip on or off, clicks, garbage, truncated JPEGs, empty bodies, unknown ids);
    every answer right, and the resident memory of the server (this process holding the model, and the page's)
    grows at most 40 MB over the second half (main grew 107 MB: a model call on each request's own thread)."""
    server = DemoServer(demos("linear"), "127.0.0.1", free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        # up to 250 px a side: 976 patches at most, under the compiled path's 1024, whose predictors (up to 4) are
        # live memory, not growth
        load = MixedLoad(base, process_tree_mb, 240, clients=8, every=20, deadline_s=240, sizes=(40, 250)).run()
    finally:
        server.shutdown()
        server.server_close()
    half = len(load.curve) // 2
    first, second = max(v for _, v in load.curve[: half + 1]), max(v for _, v in load.curve[half + 1 :])
    curve = ", ".join(f"{k}: {v:.0f}" for k, v in load.curve)
    assert second - first <= 40, (
        f"the server grew {second - first:.0f} MB over the second half (MB by request: {curve})"
    )
    assert load.counts["click"] > 30 and load.counts["truncated"] > 5, load.counts


def test_the_model_process_trims_its_heap_past_the_threshold_and_when_idle(demos, monkeypatch):
    """Freed memory stays in the heap for reuse until the resident memory is TRIM_ABOVE_MB over what it was after the
    last trim, or the server goes idle after answering (a meter that adds 40 MB per upload and a trim that gives it
    all back stand in for the heap)."""
    from segmenter import runtime
    from segmenter.demo import server as demo_server

    monkeypatch.setattr(demo_server, "TRIM_ABOVE_MB", 64)
    rss, trims = {"mb": 500.0}, []
    monkeypatch.setattr(runtime, "resident_mb", lambda: rss["mb"])
    monkeypatch.setattr(
        runtime, "release_freed_memory", lambda collect=True: (trims.append(rss["mb"]), rss.update(mb=500.0))
    )
    demo = demos("linear")
    predict = demo.predict
    monkeypatch.setattr(demo, "predict", lambda *a: (rss.update(mb=rss["mb"] + 40), predict(*a))[1])
    server = DemoServer(demo, "127.0.0.1", free_port())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.3}, daemon=True).start()
    try:
        base, data = f"http://127.0.0.1:{server.server_address[1]}", png_bytes(odd_image(40, 50))
        for _ in range(5):
            assert ask(base + "/api/predict", data)[0] == 200
        time.sleep(1.0)  # idle: one more trim
    finally:
        server.shutdown()
        server.server_close()
    assert trims and max(trims) <= 500 + 2 * 40 and rss["mb"] == 500.0, (
        f"trimmed at {trims} MB, {rss['mb']} MB left after the last upload and an idle while (threshold 564 MB)"
    )


def test_a_busy_port_is_one_sentence(demos):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        msg = rf"cannot listen on 127.0.0.1:{port} \(Address already in use\); pick another --port"
        with pytest.raises(OSError, match=msg):
            serve(demos("linear"), "127.0.0.1", port)

"""The demo page in a real browser: headless Chromium (Selenium) against tools/demo.py on a free loopback port.

Loads the page, uploads an image, waits for the overlay, checks the class map the page holds equals the
Inferencer's, reads the legend and the area table, clicks a pixel and reads the attention panel against
attention_maps, toggles flip, and sends bad uploads; for each model family and the PyTorch twin.
The `demo` tier (about 2 minutes): python -m pytest -m demo tests/test_demo_browser.py
"""

import io
import os

import numpy as np
import pytest
from PIL import Image

from segmenter.demo.browser import DemoProcess, chromium_paths, click_pixel, data_url_image, upload, wait_state
from segmenter.visualize.attention import attention_maps
from tests.demo_helpers import odd_image, random_weights, tiny_config

pytestmark = [
    pytest.mark.demo,
    pytest.mark.slow,
    pytest.mark.skipif(
        chromium_paths() is None, reason="needs chromium and chromedriver (tools/run_tests.sh installs them)"
    ),
]


@pytest.fixture(scope="module")
def driver():
    pytest.importorskip("selenium", reason="pip install -e .[demo] (selenium)")
    from segmenter.demo.browser import chrome

    d = chrome(1400, 1100)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo_browser")
    out = {}
    for name in ("linear", "mask", "upernet"):
        cfg = tiny_config(tmp, name)
        out[name] = cfg, random_weights(cfg, str(tmp / f"{name}.pdparams"), seed=7)
    return out


def inferencer(framework, cfg, weights, **kw):
    if framework == "torch":
        from segmenter.pytorch.inference import Inferencer
    else:
        from segmenter.inference import Inferencer
    return Inferencer(cfg, weights, **kw)


def text(driver, css):
    return [e.text for e in driver.find_elements("css selector", css)]


def visible(driver, css):
    """The elements matching css that the page shows."""
    return [e for e in driver.find_elements("css selector", css) if e.is_displayed()]


def check_query_marker_and_captions(driver):
    """The attention row's window shows the query patch boxed in red, at least 10 px on screen wherever the patch
    lands (a 512 px image in a 150 px tile shrinks a patch of 8 to 2 px); every head's caption fits its tile."""
    att = driver.execute_script("return window.demo.attention")
    bw, (r, c), p = att["box"][3], att["query"], att["patch"]
    figs = driver.find_elements("css selector", "#attn-heads figure.window")
    markers = [m for f in figs for m in f.find_elements("css selector", ".query") if m.is_displayed()]
    assert len(figs) == 1 and len(markers) == 1, f"{len(markers)} query markers shown in the attention row"
    img = figs[0].find_element("tag name", "img")
    rect = "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height]"
    il, it, iw, ih = driver.execute_script(rect, img)
    ml, mt, mw, mh = driver.execute_script(rect, markers[0])
    s = iw / bw
    cx, cy = il + (c * p + p / 2) * s, it + (r * p + p / 2) * s  # the patch's centre on screen
    assert abs(ml + mw / 2 - cx) <= 1.5 and abs(mt + mh / 2 - cy) <= 1.5 and min(mw, mh) >= 9.5, (
        f"marker at ({ml:.1f}, {mt:.1f}) {mw:.1f}x{mh:.1f} px; patch ({r}, {c}) of {p} px is centred at "
        f"({cx:.1f}, {cy:.1f}) in the {iw:.0f} px tile"
    )
    shot = np.asarray(Image.open(io.BytesIO(figs[0].screenshot_as_png)).convert("RGB")).astype(int)
    red = int(((shot[..., 0] > 200) & (shot[..., 1] < 60) & (shot[..., 2] < 60)).sum())
    assert red >= 30, f"{red} red pixels in the screenshot of the query's tile"
    fits = driver.execute_script(
        "return [...document.querySelectorAll('#attn-heads figure.head')].map(f => {"
        " const c = f.querySelector('figcaption'), i = f.querySelector('img');"
        " return [c.textContent, c.getBoundingClientRect().right - i.getBoundingClientRect().right,"
        " c.scrollWidth - c.clientWidth]; })"
    )
    over = [f for f in fits if f[1] > 0.5 or f[2] > 0]
    assert fits and not over, f"head captions past their tiles (caption, px past the tile, px overflowing): {over}"


@pytest.mark.parametrize(
    "name,framework", [("linear", "paddle"), ("mask", "paddle"), ("upernet", "paddle"), ("mask", "torch")]
)
def test_upload_overlay_click_attention(driver, made, tmp_path, name, framework):
    cfg, weights = made[name]
    img = odd_image(75, 103, seed=5)  # no patch divides 75 or 103
    Image.fromarray(img).save(tmp_path / "upload.png")
    server = DemoProcess(cfg, weights, framework)
    try:
        driver.get(server.url)
        assert wait_state(driver, ("ready", "error")) == "ready", driver.find_element("id", "message").text
        info = driver.execute_script("return window.demo.info")
        stray = [
            e.text or e.get_attribute("id") for e in visible(driver, "#results, #results *, #timings, #attention *")
        ]
        assert stray == [], f"the page shows results before any image: {stray}"
        state = upload(driver, str(tmp_path / "upload.png"))
        assert state == "done", driver.find_element("id", "message").text

        # the class map the page holds (its download link) is the Inferencer's for the same image and options
        seg = inferencer(framework, cfg, weights)
        slide = driver.execute_script("return window.demo.last.slide")
        assert slide == bool(seg.infer_kwargs["is_slide"]), "the page's slice default is not the config's"
        want = seg(img).pred
        got = data_url_image(driver.find_element("id", "mask-link").get_attribute("href"))
        diff = int((got != want).sum()) if got.shape == want.shape else -1
        assert diff == 0, f"{name} ({framework}): page mask {got.shape} differs from the Inferencer in {diff} pixels"
        counts = np.bincount(want.ravel(), minlength=len(info["names"]))
        order = [c for c in np.argsort(-counts, kind="stable") if counts[c]]
        rows, chips = text(driver, "#areas tbody tr"), text(driver, "#legend .chip")
        listed, rest = order[:20], order[20:]  # the page lists 20 classes, then sums the rest in one line
        want_rows = [str(counts[c]) for c in listed] + ([str(counts[rest].sum())] if rest else [])
        assert [r.split()[-2] for r in rows] == want_rows, rows
        assert chips == [info["names"][c] for c in listed] + ([f"and {len(rest)} more classes"] if rest else [])
        if rest:
            assert rows[-1].startswith(f"{len(rest)} more classes"), rows[-1]
        shown = driver.execute_script("return document.getElementById('overlay').naturalWidth")
        assert shown == 103, f"overlay is {shown} px wide, the image 103"

        # click a pixel: the attention panel shows every head of the chosen layer, with attention_maps' numbers
        assert click_pixel(driver, 60, 90) == "done", driver.find_element("id", "message").text
        y, x = (driver.execute_script("return window.demo.click")[k] for k in ("y", "x"))
        assert abs(y - 60) <= 1 and abs(x - 90) <= 1, f"clicked ({y}, {x}), aimed at (60, 90)"
        xin, _ = seg.preprocess(img)
        kw = {"crop_size": seg.infer_kwargs["crop_size"], "stride": seg.infer_kwargs["stride"]} if slide else {}
        m = attention_maps(seg.model, xin, info["depth"] - 1, (y * xin.shape[1] // 75, x * xin.shape[2] // 103), **kw)
        title = driver.find_element("id", "attn-title").text
        assert f"encoder layer {info['depth'] - 1}, patch (row {m.query[0]}, col {m.query[1]})" in title, title
        captions = text(driver, "#attn-heads figure.head figcaption")  # "head k · min–max", 2 significant digits
        assert [c.split(" · ")[0] for c in captions] == [f"head {k}" for k in range(len(m.heads))], captions
        shown = np.array([[float(v) for v in c.split(" · ")[1].split("–")] for c in captions])
        want = np.stack([m.heads.reshape(len(m.heads), -1).min(1), m.heads.reshape(len(m.heads), -1).max(1)], 1)
        assert np.allclose(shown, want, rtol=0.05, atol=0), f"head ranges {shown.tolist()} vs {want.tolist()}"
        masks = text(driver, "#attn-classes figure.class-mask figcaption")
        if m.class_masks is None:
            assert masks == [], masks
        else:
            area = np.bincount(m.class_masks.argmax(0).ravel(), minlength=m.class_masks.shape[0])
            assert masks == [info["names"][c] for c in np.argsort(-area, kind="stable")[:8]], masks
        if name != "linear":
            return

        # the flip toggle re-runs the image: the Inferencer with flip_horizontal gives the same map
        driver.execute_script("document.body.dataset.state = 'toggling'")
        driver.find_element("id", "flip").click()
        assert wait_state(driver) == "done"
        got = data_url_image(driver.find_element("id", "mask-link").get_attribute("href"))
        want = inferencer(framework, cfg, weights, flip_horizontal=True)(img).pred
        assert np.array_equal(got, want), f"flip: {int((got != want).sum())} pixels differ from the Inferencer"

        # a bundled sample, picked from the menu, goes the same way
        from selenium.webdriver.support.ui import Select

        from segmenter.demo.samples import SAMPLES

        driver.execute_script("document.body.dataset.state = 'picking'")
        Select(driver.find_element("id", "sample")).select_by_value("shapes_96")
        assert wait_state(driver) == "done", driver.find_element("id", "message").text
        got = data_url_image(driver.find_element("id", "mask-link").get_attribute("href"))
        want = inferencer(framework, cfg, weights, flip_horizontal=True)(SAMPLES["shapes_96"]()).pred
        assert np.array_equal(got, want), f"sample: {int((got != want).sum())} pixels differ from the Inferencer"

        # whole-image mode on a 512 px sample: the query patch is boxed in the attention row, the captions fit
        driver.execute_script("document.body.dataset.state = 'toggling'")
        driver.find_element("id", "slide").click()
        assert wait_state(driver) == "done" and not driver.execute_script("return window.demo.last.slide")
        driver.execute_script("document.body.dataset.state = 'picking'")
        Select(driver.find_element("id", "sample")).select_by_value("shapes_512")
        assert wait_state(driver) == "done", driver.find_element("id", "message").text
        assert click_pixel(driver, 341, 269) == "done", driver.find_element("id", "message").text
        check_query_marker_and_captions(driver)

        # bad uploads: one sentence on the page, never a traceback
        (tmp_path / "notes.png").write_text("not an image at all")
        Image.fromarray(np.zeros((2, 5000, 3), np.uint8)).save(tmp_path / "wide.png")
        assert upload(driver, str(tmp_path / "notes.png")) == "error"
        assert "notes.png is not an image PIL can read" in driver.find_element("id", "message").text
        left = [e.get_attribute("id") or e.text for e in visible(driver, "#results *, #timings, #attention *")]
        assert left == [], f"the previous image's results stay under the error: {left}"
        assert upload(driver, str(tmp_path / "wide.png")) == "error"
        msg = driver.find_element("id", "message").text
        assert "wide.png is 5000x2 px; the limit is 4096 px on the longest side" in msg, msg
        assert "Traceback" not in driver.page_source
        outside = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(u => !u.startsWith(location.origin) && !u.startsWith('data:'))"
        )
        assert outside == [], f"the page fetched from outside the demo server: {outside}"
    finally:
        log = server.stop()
    assert "Traceback" not in log, log[-3000:]
    assert os.path.basename(cfg) in log and "open http://127.0.0.1:" in log and "demo stopped" in log, log[-3000:]

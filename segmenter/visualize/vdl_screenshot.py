"""Screenshot of VisualDL's Images page in headless Chromium, checked against the panels' expected geometry.

    python -m segmenter.visualize.vdl_screenshot --logdir output/vdl --image_size 96 \
        --save docs/figures/visualdl_images.png

Serves VisualDL on 127.0.0.1 only, reads each `Evaluate/panel_*` image back through VisualDL's own HTTP API and
checks its width (3 tiles + 2 gaps) and height (title + tile + legend), takes the screenshot, then finds the
truth/prediction tiles (black backgrounds) in it and checks that they are squares spaced one tile + gap apart.
Needs `chromium` (apt-get install chromium). VisualDL 2.5.3 answers 500 to a page request without an
Accept-Language header (its locale cookie is None under current werkzeug); Chromium sends one.
"""

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import numpy as np
from PIL import Image

from segmenter.visualize.panels import GAP, TITLE_H, tile_scale


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"Accept-Language": "en-US"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def black_squares(shot: np.ndarray, min_side: int = 40) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (y, x, h, w) of the large pure-black regions of a screenshot (the tiles' backgrounds)."""
    from scipy import ndimage

    lab, n = ndimage.label((shot[..., :3] == 0).all(-1))
    boxes = []
    for sl in ndimage.find_objects(lab):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if h >= min_side and w >= min_side:
            boxes.append((sl[0].start, sl[1].start, h, w))
    return boxes


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--image_size", type=int, required=True, help="side of the (square) validation images")
    ap.add_argument("--save", default="docs/figures/visualdl_images.png")
    ap.add_argument("--window", type=int, nargs=2, default=[1400, 1100], metavar=("W", "H"))
    a = ap.parse_args(argv)
    port = free_port()
    server = subprocess.Popen(
        [
            shutil.which("visualdl") or "visualdl",
            "--logdir",
            a.logdir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-telemetry",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/app"
    try:
        for _ in range(120):
            try:
                tags = json.loads(get(base + "/api/image/tags"))["data"]
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"VisualDL did not answer on {base} within 60 s")
        run, names = tags["runs"][0], sorted(tags["tags"][0])
        if not [t for t in names if t.startswith("Evaluate/panel_")]:
            raise ValueError(
                f"{a.logdir} has no Evaluate/panel_* image tags ({names}); train with --use_vdl --do_eval."
            )
        s = a.image_size * tile_scale(a.image_size, a.image_size)  # the panels enlarge small images
        width = 3 * s + 2 * GAP
        sizes = {}
        for tag in names:
            q = urllib.parse.urlencode({"run": run, "tag": tag, "index": 0})
            img = Image.open(io.BytesIO(get(f"{base}/api/image/image?{q}")))
            sizes[tag] = img.size
            if img.size[0] != width or img.size[1] <= TITLE_H + s:
                raise AssertionError(f"{tag}: panel {img.size} is not {width} wide and taller than {TITLE_H + s}")
        os.makedirs(os.path.dirname(os.path.abspath(a.save)), exist_ok=True)
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--lang=en-US",
                f"--window-size={a.window[0]},{a.window[1]}",
                "--virtual-time-budget=15000",
                f"--screenshot={os.path.abspath(a.save)}",
                base + "/image",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    shot = np.asarray(Image.open(a.save).convert("RGB"))
    tiles = black_squares(shot)
    sides = [max(h, w) for _, _, h, w in tiles]
    if len(tiles) < 2 * len(names):
        raise AssertionError(
            f"{a.save}: {len(tiles)} black tiles, expected the truth and prediction tiles of {len(names)} panels"
        )
    scale = float(np.median(sides)) / s  # the page shrinks or stretches the panels to its cards
    rows: dict = {}
    for y, x, _, _ in tiles:
        rows.setdefault(round(y / 8), []).append(x)
    steps = [b - a_ for xs in rows.values() for a_, b in zip(sorted(xs), sorted(xs)[1:])]
    want = (s + GAP) * scale
    near = [d for d in steps if abs(d - want) <= 3]
    if not near:
        raise AssertionError(f"{a.save}: no truth -> prediction step of {want:.1f} px between tiles ({steps})")
    report = {"panels": sizes, "tiles": len(tiles), "scale": scale, "tile_step_px": near, "expected_step_px": want}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()

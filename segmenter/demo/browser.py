"""Drive the demo page in headless Chromium: start tools/demo.py on a free loopback port, upload, click, screenshot.

    python -m segmenter.demo.browser --config X.yml --weights W --image img.png --click 40 50 \
        --screenshot docs/figures/demo.png --repeats 5

Prints the time from upload to overlay as the page measures it (file chosen -> overlay shown, in the browser),
median of --repeats uploads of the same file (each a fresh run: the server keeps no cache). Used by
tests/test_demo_browser.py and for the figure in docs/visualization.md. Needs Debian's `chromium` and
`chromium-driver` (apt-get install chromium chromium-driver) and `pip install selenium` (the `demo` extra).
"""

import argparse
import base64
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
from typing import List, Optional

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_paths() -> Optional[tuple]:
    """(chromium, chromedriver) executables, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


class DemoProcess:
    """tools/demo.py in a subprocess on 127.0.0.1:<free port>; `url` once it answers; `stop()` ends it."""

    def __init__(
        self,
        config: str,
        weights: str,
        framework: str = "paddle",
        extra: Optional[List[str]] = None,
        timeout: float = 180.0,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [
            sys.executable,
            os.path.join(ROOT, "tools", "demo.py"),
            "--config",
            config,
            "--weights",
            weights,
            "--framework",
            framework,
            "--port",
            str(self.port),
        ] + list(extra or [])
        self.log = io.BytesIO()
        self.started = threading.Event()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)  # keeps the pipe drained while it serves
        self.reader.start()
        if not self.started.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"tools/demo.py did not start within {timeout:.0f} s:\n{self.output()}")

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            self.log.write(line)
            if b"open http://127.0.0.1:" in line:
                self.started.set()
        self.started.set()  # it exited: the constructor sees poll() is not None

    def output(self) -> str:
        return self.log.getvalue().decode(errors="replace")

    def stop(self, grace: float = 30.0) -> str:
        """End the server as Ctrl+C does (SIGINT; SIGKILL after `grace` s); returns everything it printed. The grace is
        long because a compiled predictor's run holds Python's GIL, so Ctrl+C is handled once the run in progress ends
        (ViT-S at 512: 3 s idle, over 10 s on a loaded CI machine, where 10 s of grace once killed a healthy demo)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.write(f"[DemoProcess: no exit {grace:.0f} s after SIGINT; killed]\n".encode())
        self.reader.join(10)
        return self.output()


def chrome(width: int = 1400, height: int = 1100):
    """Headless Chromium through Selenium, with Chromium's own background traffic off (no network here)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise FileNotFoundError("chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=paths[1]), options=opts)


def wait_state(driver, states=("done", "error"), timeout: float = 120.0) -> str:
    """Wait until the page's body data-state is one of `states`; returns it."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script("return document.body.dataset.state") in states
    )
    return driver.execute_script("return document.body.dataset.state")


def upload(driver, path: str, timeout: float = 120.0) -> str:
    """Choose `path` in the page's file input and wait for the overlay (or an error); returns the state."""
    driver.execute_script("document.body.dataset.state = 'choosing'; document.getElementById('file').value = ''")
    driver.find_element("id", "file").send_keys(os.path.abspath(path))
    return wait_state(driver, timeout=timeout)


def click_pixel(driver, y: int, x: int, timeout: float = 120.0) -> str:
    """Click pixel (y, x) of the image on the shown overlay and wait for the attention panel (or an error)."""
    from selenium.webdriver.common.action_chains import ActionChains

    img = driver.find_element("id", "overlay")
    nat_w, nat_h, shown_w, shown_h = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); "
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight, r.width, r.height]",
        img,
    )
    # Selenium offsets are from the element's centre, in CSS pixels; aim at the middle of the image pixel
    ox = (x + 0.5) * shown_w / nat_w - shown_w / 2
    oy = (y + 0.5) * shown_h / nat_h - shown_h / 2
    driver.execute_script("document.body.dataset.state = 'clicking'")
    ActionChains(driver).move_to_element_with_offset(img, int(round(ox)), int(round(oy))).click().perform()
    return wait_state(driver, timeout=timeout)


def data_url_image(url: str) -> np.ndarray:
    """The array of a data:image/png;base64 URL (a class map comes back as its class indices)."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="YAML config")
    ap.add_argument("--weights", default="none", help="weights (default: none, the random init)")
    ap.add_argument("--framework", choices=["paddle", "torch"], default="paddle", help="default: paddle")
    ap.add_argument("--image", default=None, help="image to upload (default: a 512x512 procedural one)")
    ap.add_argument(
        "--click",
        type=int,
        nargs=2,
        metavar=("Y", "X"),
        default=None,
        help="pixel to click for the attention panel (default: none)",
    )
    ap.add_argument("--screenshot", default=None, help="PNG of the whole page after the last step (default: none)")
    ap.add_argument("--repeats", type=int, default=1, help="uploads timed, median reported (default: 1)")
    ap.add_argument(
        "--window",
        type=int,
        nargs=2,
        default=[1400, 1100],
        metavar=("W", "H"),
        help="browser window (default: 1400 1100)",
    )
    a = ap.parse_args(argv)
    image = a.image
    if image is None:
        from segmenter.demo.samples import SAMPLES

        image = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"demo_512_{os.getpid()}.png")
        Image.fromarray(SAMPLES["shapes_512"]()).save(image)
    server = DemoProcess(a.config, a.weights, a.framework)
    driver = chrome(*a.window)
    try:
        driver.get(server.url)
        wait_state(driver, ("ready", "error"))
        times = []
        for _ in range(a.repeats):
            state = upload(driver, image)
            if state != "done":
                raise RuntimeError(f"upload failed: {driver.find_element('id', 'message').text}")
            times.append(driver.execute_script("return window.demo.uploadToOverlayMs"))
        size = driver.execute_script("return window.demo.last.size")
        server_ms = driver.execute_script("return window.demo.last.timings_ms")
        if a.click:
            click_pixel(driver, *a.click)
        if a.screenshot:
            from selenium.webdriver.support.ui import WebDriverWait

            WebDriverWait(driver, 30).until(
                lambda d: d.execute_script("return [...document.images].every(i => !i.src || i.complete)")
            )  # the panel's maps laid out
            height = driver.execute_script(  # the page's height plus the window's frame around the viewport
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight + 16"
            )
            driver.set_window_size(a.window[0], max(a.window[1], height))
            os.makedirs(os.path.dirname(os.path.abspath(a.screenshot)), exist_ok=True)
            driver.save_screenshot(a.screenshot)
    finally:
        driver.quit()
        server.stop()
    med = statistics.median(times)
    print(
        f"{size[1]}x{size[0]} upload to overlay: median {med:.0f} ms over {len(times)} "
        f"({', '.join(f'{t:.0f}' for t in times)}); last run on the server: "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in server_ms.items())
    )
    if a.screenshot:
        print(f"screenshot written to {a.screenshot}")
    return {"median_ms": med, "times_ms": times, "server_ms": server_ms}


if __name__ == "__main__":
    main()

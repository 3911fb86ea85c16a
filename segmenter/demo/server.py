"""The demo's web server: the standard library's threading HTTP server, one page of our own (static/), a JSON API.

    GET  /                      the page (static/index.html, demo.js, demo.css: nothing fetched from elsewhere)
    GET  /api/info              the model, its classes and colours, the toggles the config allows, the limits
    GET  /samples/<name>.png    a bundled sample image
    POST /api/predict?slide=0|1&flip=0|1&bf16=0|1&name=N   body: the image file's bytes -> overlay, class map,
                                areas, timings
    POST /api/attention         body: {"id", "y", "x", "layer"} -> per-head maps (+ class attention and masks)

A user's mistake answers 400 with {"error": sentence}; anything else 500 with a one-line message (the traceback
goes to the terminal, never to the page).
"""

import json
import os
import signal
import sys
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Tuple

from segmenter.demo.app import Demo, DemoError, size_text

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}


class Handler(BaseHTTPRequestHandler):
    """Routes the page's requests to the server's `demo`."""

    server: "DemoServer"

    def log_message(self, fmt: str, *args: Any) -> None:  # the terminal gets one line per run, from the routes
        pass

    def send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code: int, obj: Dict[str, Any]) -> None:
        self.send(code, json.dumps(obj).encode(), "application/json")

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        limit = self.server.demo.max_bytes
        if n > limit:
            left = n
            while left > 0:  # drain it, so the browser reads the answer instead of a reset connection
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
            raise DemoError(
                f"the upload is {size_text(n)}; the limit is {size_text(limit)} (--max_mb): upload a smaller file."
            )
        return self.rfile.read(n)

    def route(self, method: str) -> Tuple[int, bytes, str]:
        url = urllib.parse.urlparse(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        demo = self.server.demo
        if method == "GET" and url.path in ("/", "/index.html", "/demo.js", "/demo.css"):
            f = "index.html" if url.path == "/" else url.path[1:]
            with open(os.path.join(STATIC, f), "rb") as fh:
                return 200, fh.read(), TYPES[os.path.splitext(f)[1]]
        if method == "GET" and url.path == "/api/info":
            return 200, json.dumps(demo.info()).encode(), "application/json"
        if method == "GET" and url.path.startswith("/samples/") and url.path.endswith(".png"):
            return 200, demo.sample_png(url.path[len("/samples/") : -len(".png")]), "image/png"
        if method == "POST" and url.path == "/api/predict":
            flag = {"1": True, "0": False}
            out = demo.predict(
                self.body(),
                flag.get(q.get("slide", "")),
                flag.get(q.get("flip", "")),
                q.get("name") or "the upload",
                flag.get(q.get("bf16", "")),
            )
            h, w = out["size"]
            print(
                f"predicted {q.get('name') or 'an upload'} ({w}x{h}, slice {'on' if out['slide'] else 'off'}, flip "
                f"{'on' if out['flip'] else 'off'}, {out['precision']}): model {out['timings_ms']['model']:.0f} ms, "
                f"server total {out['timings_ms']['server total']:.0f} ms",
                flush=True,
            )
            return 200, json.dumps(out).encode(), "application/json"
        if method == "POST" and url.path == "/api/attention":
            try:
                req = json.loads(self.body() or b"{}")
                args = str(req["id"]), int(req["y"]), int(req["x"]), int(req.get("layer", -1))
            except (ValueError, KeyError, TypeError):
                raise DemoError(
                    'an attention request needs JSON {"id", "y", "x", "layer"} with integer pixel coordinates.'
                ) from None
            return 200, json.dumps(demo.attention(*args)).encode(), "application/json"
        return 404, json.dumps({"error": f"no such page: {url.path}"}).encode(), "application/json"

    def answer(self, method: str) -> None:
        try:
            code, body, ctype = self.route(method)
        except DemoError as e:
            code, body, ctype = 400, json.dumps({"error": str(e)}).encode(), "application/json"
        except Exception as e:  # a bug or a model failure: one line on the page, the traceback in the terminal
            traceback.print_exc(file=sys.stderr)
            msg = f"the server failed on this request ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            code, body, ctype = (
                500,
                json.dumps({"error": msg + "); the terminal running tools/demo.py shows the details."}).encode(),
                "application/json",
            )
        try:
            self.send(code, body, ctype)
        except (BrokenPipeError, ConnectionResetError):  # the page went away mid-answer
            pass

    def do_GET(self) -> None:
        self.answer("GET")

    def do_POST(self) -> None:
        self.answer("POST")


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, demo: Demo, host: str = "127.0.0.1", port: int = 7860):
        self.demo = demo
        super().__init__((host, port), Handler)


def serve(demo: Demo, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page until Ctrl+C, printing the URL to open."""
    try:
        server = DemoServer(demo, host, port)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port.") from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    print(
        f"demo of {demo.config} ({demo.describe()}): open http://{shown}:{server.server_address[1]}/ (Ctrl+C stops it)",
        flush=True,
    )

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `kill` stops it as Ctrl+C does (Paddle's own handler dumps a C++ stack)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("demo stopped", flush=True)
    finally:
        server.server_close()

"""The demo's web server, in two processes: the page's, which answers the browser, and the model's, which runs
every prediction and attention click one at a time.

    GET  /                      the page (static/index.html, demo.js, demo.css: nothing fetched from elsewhere)
    GET  /api/info              the model, its classes and colours, the toggles the config allows, the limits
    GET  /samples/<name>.png    a bundled sample image
    POST /api/predict?slide=0|1&flip=0|1&bf16=0|1&name=N   body: the image file's bytes -> overlay, class map,
                                areas, timings
    POST /api/attention         body: {"id", "y", "x", "layer"} -> per-head maps (+ class attention and masks)

The page's process is this file run as a script (`python -I server.py FD`, the standard library only, ~20 MB): a
threading HTTP server that answers the page, the info and the samples itself and queues the two POSTs, first come
first served, for the model's process (tools/demo.py, or whoever calls `DemoServer.serve_forever`), which answers
them one at a time on one thread through a socket pair. Why two processes:
- paddle's inference predictor (the compiled path) holds Python's GIL for its whole run (ViT-S at 512: 3.2 s on
  the loaded 2-core machine, during which another thread of the process never ran), so a server thread beside the
  model could not answer /api/info or the page while a forward ran;
- a model call from each request's own thread left every thread's malloc arena holding that call's peak (freed
  memory is kept for reuse, segmenter/runtime.py): the server grew 506 -> 1825 MB over 1500 requests (issue 28).
  On one thread the model's memory stays flat (docs/benchmarks.md, "Long runs").

A user's mistake answers 400 with {"error": sentence}; anything else 500 with a one-line message (the traceback
goes to the terminal, never to the page). When more than `max_waiting` requests wait for the model, a new one is
answered 503 at once (the queue holds their uploads: it has a cap like every cache).
"""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any, Dict, Optional, Tuple

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
# The model's process trims its heap (runtime.release_freed_memory) once its resident memory is TRIM_ABOVE_MB above
# what it held after the last trim, and when idle after answering: freed memory is otherwise kept for reuse (a
# forward's page faults), but requests of ever-changing sizes never fit back into the holes they left, and the heap
# grew in steps of ~100 MB (the quickstart model: 607 -> 815 MB over 300 uploads and clicks on one thread, 560
# trimmed after each; a trim costs 50-160 ms).
TRIM_ABOVE_MB = 64
MAX_WAITING = 32  # requests queued for the model (each holds its upload, up to --max_mb); past it: 503 at once
START_TIMEOUT_S = 60.0  # the page's process binds its port within this (a bare Python start: ~0.1 s)


class DemoError(ValueError):
    """A bad upload or request; its message is what the page shows."""


def size_text(n: float) -> str:
    """Bytes as a person reads them: 512.0 KiB, 32.0 MiB, 1.5 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024:.1f} KiB"


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


# -- the model's side: one request at a time ----------------------------------------------------------------------
def answer(demo: Any, kind: str, query: Dict[str, str], body: bytes, waited_ms: float) -> Tuple[int, bytes]:
    """(HTTP status, JSON body) of a queued request, computed by `demo` (a segmenter.demo.Demo)."""
    try:
        if kind == "predict":
            flag = {"1": True, "0": False}
            name = query.get("name") or "the upload"
            out = demo.predict(
                body,
                flag.get(query.get("slide", "")),
                flag.get(query.get("flip", "")),
                name,
                flag.get(query.get("bf16", "")),
            )
            h, w = out["size"]
            print(
                f"predicted {query.get('name') or 'an upload'} ({w}x{h}, slice {'on' if out['slide'] else 'off'}, "
                f"flip {'on' if out['flip'] else 'off'}, {out['precision']}): model {out['timings_ms']['model']:.0f} "
                f"ms, server total {out['timings_ms']['server total']:.0f} ms, queued {waited_ms:.0f} ms",
                flush=True,
            )
        else:
            try:
                req = json.loads(body or b"{}")
                args = str(req["id"]), int(req["y"]), int(req["x"]), int(req.get("layer", -1))
            except (ValueError, KeyError, TypeError):
                raise DemoError(
                    'an attention request needs JSON {"id", "y", "x", "layer"} with integer pixel coordinates.'
                ) from None
            out = demo.attention(*args)
        out["timings_ms"] = {"queued": round(waited_ms, 1), **out["timings_ms"]}  # waiting for earlier requests
        return 200, json.dumps(out).encode()
    except DemoError as e:
        return 400, error_body(str(e))
    except Exception as e:  # a bug or a model failure: one line on the page, the traceback in the terminal
        traceback.print_exc(file=sys.stderr)
        first = str(e).splitlines()[0] if str(e) else ""
        return 500, error_body(
            f"the server failed on this request ({type(e).__name__}: {first}); the terminal running tools/demo.py "
            "shows the details."
        )


class DemoServer:
    """The page's process on host:port (started here) and the model's loop (`serve_forever`, in the calling
    thread): the same calls as the standard library's servers (`server_address`, `serve_forever`, `shutdown`,
    `server_close`). `demo` is a segmenter.demo.Demo."""

    def __init__(self, demo: Any, host: str = "127.0.0.1", port: int = 7860, max_waiting: int = MAX_WAITING):
        self.demo = demo
        hello = {
            "host": host,
            "port": port,
            "info": json.dumps(demo.info()).encode(),
            "samples": {name: demo.sample_png(name) for name in demo.samples},
            "max_bytes": demo.max_bytes,
            "max_waiting": max_waiting,
        }
        ours, theirs = socket.socketpair()
        self.page = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.PIPE,  # its lifeline: closed (by server_close, or by this process ending), it stops
            start_new_session=True,  # Ctrl+C in the terminal stops the model's process, which then ends this one
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self._stop, self._stopped = threading.Event(), threading.Event()
        self._stopped.set()
        try:
            self.conn.send(hello)
            if not self.conn.poll(START_TIMEOUT_S):
                raise OSError(f"the page's process did not start within {START_TIMEOUT_S:.0f} s")
            status, value = self.conn.recv()
        except (OSError, EOFError) as e:
            self.server_close()
            raise OSError(f"cannot start the demo's page server ({e}).") from None
        if status != "listening":
            self.server_close()
            raise OSError(value)
        self.server_address = (host, int(value))

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Answer the page's process's requests, one at a time, until `shutdown()`."""
        from segmenter.runtime import release_freed_memory, resident_mb

        self._stop.clear()
        self._stopped.clear()
        floor, answered = resident_mb(), False  # the heap after the last trim; anything answered since
        try:
            while not self._stop.is_set():
                if not self.conn.poll(poll_interval):
                    if answered:  # idle: hand what the last requests freed back to the system
                        release_freed_memory(collect=False)
                        floor, answered = resident_mb(), False
                    continue
                try:
                    kind, query, body, waited_ms = self.conn.recv()
                except EOFError:
                    raise RuntimeError(
                        f"the demo's page server stopped (exit status {self.page.poll()}); start tools/demo.py again."
                    ) from None
                reply = answer(self.demo, kind, query, body, waited_ms)
                del body  # the upload goes before the answer is sent: nothing of a request outlives it here
                self.conn.send(reply)
                del reply
                answered = True
                if resident_mb() > floor + TRIM_ABOVE_MB:
                    release_freed_memory(collect=False)
                    floor, answered = resident_mb(), False
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop `serve_forever` (running in another thread) and wait until it returned."""
        self._stop.set()
        self._stopped.wait()

    def server_close(self) -> None:
        """End the page's process (closing its lifeline; killed after 10 s) and the socket pair."""
        if self.page.stdin and not self.page.stdin.closed:
            self.page.stdin.close()
        try:
            self.page.wait(10)
        except subprocess.TimeoutExpired:
            self.page.kill()
            self.page.wait()
        self.conn.close()


def serve(demo: Any, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page until Ctrl+C, printing the URL to open."""
    try:
        server = DemoServer(demo, host, port)
    except OSError as e:
        raise OSError(f"{e}; pick another --port." if "cannot listen" in str(e) else str(e)) from None
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


# -- the page's side: this file run as a script, the standard library only ------------------------------------------
class Job:
    """A request waiting for the model: what to ask, when it was queued, and (once `done`) the answer."""

    def __init__(self, kind: str, query: Dict[str, str], body: bytes):
        self.kind, self.query, self.body = kind, query, body
        self.queued = time.perf_counter()
        self.done = threading.Event()
        self.reply: Tuple[int, bytes] = (500, error_body("the model's process did not answer."))


class Handler(BaseHTTPRequestHandler):
    """Routes the page's requests: static files, info and samples here; predictions and clicks to the model."""

    server: "PageServer"

    def log_message(self, fmt: str, *args: Any) -> None:  # the terminal gets one line per run, from the model
        pass

    def send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        limit = self.server.max_bytes
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
        if method == "GET" and url.path in ("/", "/index.html", "/demo.js", "/demo.css"):
            f = "index.html" if url.path == "/" else url.path[1:]
            with open(os.path.join(STATIC, f), "rb") as fh:
                return 200, fh.read(), TYPES[os.path.splitext(f)[1]]
        if method == "GET" and url.path == "/api/info":
            return 200, self.server.info, "application/json"
        if method == "GET" and url.path.startswith("/samples/") and url.path.endswith(".png"):
            name = url.path[len("/samples/") : -len(".png")]
            if name not in self.server.samples:
                raise DemoError(f"no sample named {name!r}; the samples are {', '.join(self.server.samples)}.")
            return 200, self.server.samples[name], "image/png"
        if method == "POST" and url.path in ("/api/predict", "/api/attention"):
            code, body = self.server.ask(Job(url.path[len("/api/") :], q, self.body()))
            return code, body, "application/json"
        return 404, error_body(f"no such page: {url.path}"), "application/json"

    def answer(self, method: str) -> None:
        try:
            code, body, ctype = self.route(method)
        except DemoError as e:
            code, body, ctype = 400, error_body(str(e)), "application/json"
        except Exception as e:  # a bug here: one line on the page, the traceback in the terminal
            traceback.print_exc(file=sys.stderr)
            code, ctype = 500, "application/json"
            body = error_body(f"the page server failed ({type(e).__name__}: {e}).")
        try:
            self.send(code, body, ctype)
        except (BrokenPipeError, ConnectionResetError):  # the page went away mid-answer
            pass

    def do_GET(self) -> None:
        self.answer("GET")

    def do_POST(self) -> None:
        self.answer("POST")


class PageServer(ThreadingHTTPServer):
    """The page's process: a thread per request, and one courier thread that hands the queued requests to the
    model's process in arrival order and waits for each answer."""

    daemon_threads = True

    def __init__(self, conn: Connection, hello: Dict[str, Any]):
        self.conn = conn
        self.info, self.samples, self.max_bytes = hello["info"], hello["samples"], hello["max_bytes"]
        self.jobs: "queue.Queue[Job]" = queue.Queue(maxsize=hello["max_waiting"])
        self.lost: Optional[str] = None  # why the model's process no longer answers
        super().__init__((hello["host"], hello["port"]), Handler)
        threading.Thread(target=self.courier, daemon=True, name="courier").start()

    def ask(self, job: Job) -> Tuple[int, bytes]:
        if self.lost:
            return 500, error_body(self.lost)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            return 503, error_body(
                f"the model is busy: {self.jobs.maxsize} requests are waiting for it; try again in a minute."
            )
        job.done.wait()
        return job.reply

    def courier(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if self.lost is None:
                    waited_ms = 1000 * (time.perf_counter() - job.queued)
                    self.conn.send((job.kind, job.query, job.body, waited_ms))
                    job.reply = self.conn.recv()
            except (EOFError, OSError):
                self.lost = "the model's process stopped; start tools/demo.py again."
            if self.lost:
                job.reply = 500, error_body(self.lost)
            job.body = b""  # the upload is not kept past its answer
            job.done.set()


def page_main(fd: int) -> int:
    """The page's process: listen where the model's process says, serve until it closes our stdin."""
    conn = Connection(fd)
    hello = conn.recv()
    try:
        httpd = PageServer(conn, hello)
    except OSError as e:
        conn.send(("error", f"cannot listen on {hello['host']}:{hello['port']} ({e.strerror})"))
        return 1
    conn.send(("listening", httpd.server_address[1]))
    threading.Thread(target=httpd.serve_forever, daemon=True, name="http").start()
    sys.stdin.buffer.read()  # returns at EOF: server_close(), or the model's process ended
    httpd.shutdown()
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(page_main(int(sys.argv[1])))

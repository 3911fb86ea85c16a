"""A local HTTP server for the weights-by-URL tests: 127.0.0.1 only, a bounded number of requests, and the ways a
real download fails (a 404, a connection that closes mid-body, a slow body two processes can overlap on)."""

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict

MAX_REQUESTS = 60  # a test that asks for more is broken: the server answers 503 from then on


@dataclass
class Route:
    """What the server sends for one path. `truncate`: the first N requests send half the body under the full
    Content-Length, then close; `delay`: seconds between the body's 64 KiB chunks."""

    body: bytes
    truncate: int = 0
    delay: float = 0.0


class Server:
    """`with Server() as s: s.routes["/a/model.pdparams"] = Route(data); s.url("/a/model.pdparams")`; `s.gets`
    counts the GETs of each path."""

    def __init__(self):
        self.routes: Dict[str, Route] = {}
        self.gets: Dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a client that stalls does not hold a thread forever

            def do_GET(self):  # noqa: N802 (http.server's name)
                with server.lock:
                    total = sum(server.gets.values())
                    server.gets[self.path] = server.gets.get(self.path, 0) + 1
                    n = server.gets[self.path]
                route = server.routes.get(self.path)
                if total >= MAX_REQUESTS:
                    self.send_error(503, "request budget of the test server spent")
                    return
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                body = route.body[: len(route.body) // 2] if n <= route.truncate else route.body
                for i in range(0, len(body), 1 << 16):
                    self.wfile.write(body[i : i + (1 << 16)])
                    self.wfile.flush()
                    if route.delay:
                        threading.Event().wait(route.delay)
                if n <= route.truncate:
                    self.close_connection = True  # the rest of the announced body never comes

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

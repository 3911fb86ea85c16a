"""Upload-to-overlay latency of the demo page with concurrent clients: p50 and p99 for 1, 4 and 8 clients, and how
long /api/info and the page take meanwhile.

    python tools/benchmark.py demo_latency [--configs Q.yml S.yml] [--clients 1 4 8] [--uploads 16] [--weights none]

For each config tools/demo.py runs on a free loopback port (random weights unless --weights: latency does not
depend on their values), two uploads warm it up (the compiled path makes its predictor at the second sight of a
size), then for each client count that many threads upload the 512x512 `shapes_512` sample (PNG, the config's own
slice setting, flip off) back to back, --uploads in all, timing each from sending the file to the answer read (the
overlay and class map the page draws: the page adds the decoding of two PNGs, a few ms). A prober fetches /api/info
and / in turn every 0.25 s throughout. The answers' own timings give the model's share and the wait in the queue.
"""

import argparse
import io
import json
import os
import statistics
import threading
import time
import urllib.request
from typing import Dict, List, Optional

import numpy as np

from benchmarks import ROOT

CONFIGS = [
    os.path.join(ROOT, "configs", "quickstart", "segmenter_tiny_shapes_64.yml"),
    os.path.join(ROOT, "configs", "segmenter", "segmenter_vit_small_linear_ade20k_512x512_160k.yml"),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tools/benchmark.py demo_latency", description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=CONFIGS, help="configs (default: the quickstart and ViT-S linear)")
    p.add_argument("--weights", default="none", help="weights for every config (default: none, the random init)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrent clients (default: 1 4 8)")
    p.add_argument(
        "--uploads", type=int, default=16, help="uploads per client count, in all, at least 2 a client (default: 16)"
    )
    p.add_argument("--json", default=None, help="write the figures here too (default: none)")
    return p.parse_args(argv)


def post(url: str, data: bytes) -> Dict:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def pct(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def round_of(base: str, png: bytes, clients: int, uploads: int) -> Dict:
    """`clients` threads sharing `uploads` uploads; the prober's GETs meanwhile."""
    lock, left, times, model, queued, errors = threading.Lock(), [uploads], [], [], [], []
    done = threading.Event()

    def client() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            t = time.perf_counter()
            try:
                out = post(base + "/api/predict?flip=0&name=shapes_512.png", png)
            except Exception as e:  # noqa: BLE001 (reported, the round goes on)
                errors.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                times.append(1000 * (time.perf_counter() - t))
                model.append(out["timings_ms"]["model"])
                queued.append(out["timings_ms"]["queued"])

    probes = []

    def prober() -> None:
        k = 0
        while not done.is_set():
            path = "/api/info" if k % 2 == 0 else "/"
            t = time.perf_counter()
            with urllib.request.urlopen(base + path, timeout=600) as r:
                r.read()
            probes.append(1000 * (time.perf_counter() - t))
            k += 1
            done.wait(0.25)

    watch = threading.Thread(target=prober, daemon=True)
    watch.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    watch.join(60)
    return {
        "clients": clients,
        "uploads": len(times),
        "errors": errors,
        "p50_ms": pct(times, 50),
        "p99_ms": pct(times, 99),
        "model_p50_ms": pct(model, 50),
        "queued_p50_ms": pct(queued, 50),
        "per_s": len(times) / wall,
        "probe_p50_ms": pct(probes, 50),
        "probe_max_ms": max(probes, default=float("nan")),
        "probes": len(probes),
    }


def main(argv: Optional[List[str]] = None) -> int:
    from PIL import Image

    from segmenter.demo.browser import DemoProcess
    from segmenter.demo.samples import SAMPLES

    a = parse_args(argv)
    buf = io.BytesIO()
    Image.fromarray(SAMPLES["shapes_512"]()).save(buf, format="PNG")
    png = buf.getvalue()
    load0, rows = os.getloadavg()[0], []
    for cfg in a.configs:
        server = DemoProcess(cfg, a.weights)
        try:
            base = server.url.rstrip("/")
            for _ in range(2):  # warm-up: imports, the compiled path's predictor
                post(base + "/api/predict?flip=0", png)
            for c in a.clients:
                r = round_of(base, png, c, max(a.uploads, 2 * c))
                r["config"] = os.path.relpath(cfg, ROOT)
                rows.append(r)
                print(
                    f"{r['config']}: {c} clients, {r['uploads']} uploads: p50 {r['p50_ms']:.0f} ms, p99 "
                    f"{r['p99_ms']:.0f} ms (model p50 {r['model_p50_ms']:.0f} ms, queued p50 {r['queued_p50_ms']:.0f}"
                    f" ms), {r['per_s']:.2f} uploads/s; /api/info and / meanwhile: p50 {r['probe_p50_ms']:.0f} ms, "
                    f"max {r['probe_max_ms']:.0f} ms over {r['probes']}"
                    + (f"; {len(r['errors'])} failed: {r['errors'][:2]}" if r["errors"] else ""),
                    flush=True,
                )
        finally:
            server.stop()
    load = f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print("\n| config | clients | p50 | p99 | model p50 | queued p50 | uploads/s | /api/info and / max |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {os.path.basename(r['config'])} | {r['clients']} | {r['p50_ms'] / 1000:.2f} s | "
            f"{r['p99_ms'] / 1000:.2f} s | {r['model_p50_ms'] / 1000:.2f} s | {r['queued_p50_ms'] / 1000:.2f} s | "
            f"{r['per_s']:.2f} | {r['probe_max_ms']:.0f} ms |"
        )
    print(f"load average: {load}; {statistics.median([r['uploads'] for r in rows]):.0f} uploads per row")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"load": load, "rows": rows}, f, indent=1)
    return 0

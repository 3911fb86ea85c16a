"""Tiny models for the demo tests: shipped configs with depth (and width) overrides, and seeded random weights."""

import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (shipped config, overrides appended under it)
TINY = {
    "linear": (
        "configs/quickstart/segmenter_tiny_shapes_64.yml",
        "model:\n  backbone:\n    depth: 1\n    embed_dim: 32\n    num_heads: 2\n",
    ),
    "mask": (
        "configs/segmenter/segmenter_vit_small_mask_ade20k_512x512_160k.yml",
        "model:\n  backbone:\n    depth: 1\n    embed_dim: 64\n    num_heads: 2\n"
        "  decoder:\n    n_layers: 1\n    d_model: 64\n    n_heads: 2\n"
        # the shipped val pipeline (ResizeByShort, Normalize) and slice windows, scaled down 512 -> 96
        "val_dataset:\n  transforms:\n    - {type: ResizeByShort, short_size: 96}\n"
        "    - {type: Normalize, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}\n"
        "test_config:\n  is_slide: True\n  crop_size: [64, 64]\n  stride: [48, 48]\n",
    ),
    "upernet": (
        "configs/upernet_vit/upernet_deit_s16_ade20k_512x512_160k.yml",
        "model:\n  backbone:\n    depth: 2\n    embed_dim: 32\n    num_heads: 2\n    out_indices: [0, 1]\n"
        "  decode_head:\n    channels: 16\n  auxiliary_head: null\n"
        # MMSeg's test resize, scaled down 512 -> 96 (at 512 the model compiled at its second call: 4 s a test)
        "val_dataset:\n  transforms:\n    - {type: MMSegResize, scale: [384, 96], keep_ratio: True}\n"
        "    - {type: Normalize, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}\n",
    ),
}


def tiny_config(tmp_path, name: str) -> str:
    """A YAML under tmp_path whose _base_ is the shipped config of `name`, with the tiny overrides."""
    base, overrides = TINY[name]
    path = os.path.join(str(tmp_path), f"tiny_{name}.yml")
    with open(path, "w") as f:
        f.write(f"_base_: {os.path.join(ROOT, base)}\n{overrides}")
    return path


def random_weights(config: str, path: str, seed: int = 0) -> str:
    """Seeded random weights of the config's Paddle model, saved as a .pdparams."""
    import paddle

    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config

    paddle.seed(seed)
    model = Builder(load_config(config)).model
    paddle.save(model.state_dict(), path)
    return path


def odd_image(h: int = 75, w: int = 103, seed: int = 0) -> np.ndarray:
    """An RGB uint8 picture of a size no patch divides: blobs of colour on noise, so classes vary."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 24)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(100, 256, 3)
    return img


# -- a long, mixed load on the demo server (tests/test_demo.py holds a short one; benchmarks/long_runs.py the long) --
def encoded(img: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """The bytes of an RGB uint8 picture as a PNG or JPEG file."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


# request kind -> its share of the mix: what a team leaving the page open sends, mistakes included
MIX = {
    "png": 0.25,  # a PNG upload of a random size (40-300 px a side), slice and flip each on or off
    "jpeg": 0.2,  # the same as a JPEG
    "click": 0.25,  # attention of a random pixel and layer of this client's last upload
    "garbage": 0.06,  # bytes that are no image
    "truncated": 0.06,  # a JPEG cut in half
    "empty": 0.06,  # an empty body
    "unknown": 0.06,  # attention of an id the server never gave
    "info": 0.06,  # GET /api/info
}


class MixedLoad:
    """`clients` threads sending `requests` requests of MIX (seeded) to a demo server at `base`, every answer
    checked (a 200 for good input, a 400 with its sentence for bad, never anything else), the server's resident
    memory (`rss()`, MB) read every `every` answered requests. Bounded in count and in time (`deadline_s`); a
    failed check or the deadline stops every client and `run` raises with what went wrong.

    After `run`: `curve` [(requests answered, MB)], `counts` {kind: n}, `latency_ms` {kind: [ms, ...]}."""

    def __init__(
        self,
        base: str,
        rss,
        requests: int,
        clients: int = 8,
        every: int = 50,
        seed: int = 0,
        deadline_s: float = 3600.0,
        sizes=(40, 300),
    ):
        self.base, self.rss, self.requests, self.clients, self.every = base.rstrip("/"), rss, requests, clients, every
        self.seed, self.deadline_s, self.sizes = seed, deadline_s, sizes
        self.curve, self.counts, self.latency_ms, self.errors = [], {}, {}, []
        self.done = self.sent = 0

    def ask(self, path: str, data=None, ctype="application/octet-stream"):
        import json
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def one(self, rng: np.random.Generator, kind: str, mine: list) -> None:
        """Send one request of `kind`; raise AssertionError when the answer is not the one that input deserves."""
        import json

        if kind in ("png", "jpeg", "truncated"):
            h, w = (int(v) for v in rng.integers(self.sizes[0], self.sizes[1] + 1, 2))
            data = encoded(odd_image(h, w, int(rng.integers(1 << 30))), "PNG" if kind == "png" else "JPEG")
            if kind == "truncated":
                data = data[: len(data) // 2]
            q = f"?slide={int(rng.integers(2))}&flip={int(rng.integers(2))}&name={kind}"
            code, out = self.ask("/api/predict" + q, data)
            if kind == "truncated":
                assert code == 400 and "truncated" in out.get("error", ""), (kind, code, out)
                return
            assert code == 200 and out["size"] == [h, w], (kind, h, w, code, out.get("error"))
            mine.append((out["id"], h, w))
        elif kind == "click":
            if not mine:
                return self.one(rng, "png", mine)
            image_id, h, w = mine[-1]
            req = {"id": image_id, "y": int(rng.integers(h)), "x": int(rng.integers(w)), "layer": -1}
            code, out = self.ask("/api/attention", json.dumps(req).encode(), "application/json")
            evicted = code == 400 and "no longer held" in out.get("error", "")  # other clients uploaded since
            assert (code == 200 and out["heads"]) or evicted, (kind, req, code, out.get("error"))
        elif kind == "garbage":
            code, out = self.ask("/api/predict?name=garbage.bin", bytes(rng.integers(0, 256, 2000, np.uint8)))
            assert code == 400 and "is not an image" in out.get("error", ""), (kind, code, out)
        elif kind == "empty":
            code, out = self.ask("/api/predict?name=empty.png", b"")
            assert code == 400 and "is empty" in out.get("error", ""), (kind, code, out)
        elif kind == "unknown":
            req = json.dumps({"id": "no-such-id", "y": 1, "x": 1}).encode()
            code, out = self.ask("/api/attention", req, "application/json")
            assert code == 400 and "no longer held" in out.get("error", ""), (kind, code, out)
        else:
            code, out = self.ask("/api/info")
            assert code == 200 and out["names"], (kind, code, out)

    def run(self) -> "MixedLoad":
        import threading
        import time

        kinds, shares = list(MIX), np.array(list(MIX.values()))
        lock, stop = threading.Lock(), threading.Event()
        start = time.monotonic()
        self.curve.append((0, self.rss()))

        def client(k: int) -> None:
            rng, mine = np.random.default_rng([self.seed, k]), []
            while not stop.is_set():
                with lock:
                    if self.sent >= self.requests:
                        return
                    self.sent += 1
                kind = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]
                t = time.perf_counter()
                try:
                    self.one(rng, kind, mine)
                except Exception as e:  # noqa: BLE001 (a wrong answer or a dead server: stop every client)
                    with lock:
                        self.errors.append(f"{type(e).__name__}: {e}")
                    stop.set()
                    return
                ms = 1000 * (time.perf_counter() - t)
                with lock:
                    self.done += 1
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    self.latency_ms.setdefault(kind, []).append(ms)
                    if self.done % self.every == 0:
                        self.curve.append((self.done, self.rss()))
                if time.monotonic() - start > self.deadline_s:
                    with lock:
                        self.errors.append(f"deadline: {self.done} of {self.requests} requests in {self.deadline_s} s")
                    stop.set()

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.deadline_s + 600)
        if self.errors:
            raise AssertionError(f"{len(self.errors)} failed of {self.done} answered: {self.errors[:3]}")
        return self


def process_tree_mb(pid: int = 0) -> float:
    """Resident memory (MB) of process `pid` (0: this one) and all its descendants (the demo's page process)."""
    pid = pid or os.getpid()
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):  # it ended meanwhile
            pass
    return total

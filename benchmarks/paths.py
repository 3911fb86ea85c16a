"""Benchmark: forward/deploy/peer/twin per model, sliding windows, train step, matmul floor, peak memory.

Each measurement runs in its own subprocess (peak RSS: /proc/self/status VmHWM). Prints a table and writes JSON.
    python tools/benchmark.py [--repeats 3] [--models vit_s_linear ...] [--json benchmark.json]
    python -m benchmarks.paths [same arguments]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from benchmarks import ROOT
from benchmarks._turns import peak_mb

MODELS = {  # name -> (embed_dim, depth, heads, decoder)
    "vit_s_linear": (384, 12, 6, "linear"),
    "vit_s_mask": (384, 12, 6, "mask_transformer"),
    "vit_b_linear": (768, 12, 12, "linear"),
    "vit_b_mask": (768, 12, 12, "mask_transformer"),
}
N_CLS, SIZE = 150, 512  # ADE20K classes, the shipped configs' crop
PATCH = 16
MATMUL_N = 2048  # the floor: one n x n x n fp32 matmul, the best GFLOP/s of paddle and torch
SLIDE_WIDTH = 4  # slide-window image: SIZE x (SLIDE_WIDTH * SIZE), stride SLIDE_STRIDE -> 5 windows
SLIDE_STRIDE = 480  # the official evaluation stride
SLIDE_WINDOWS = math.ceil((SLIDE_WIDTH * SIZE - SIZE) / SLIDE_STRIDE) + 1  # one row of windows: 5
WINDOW_BATCH = 8  # windows per batch on the batched slide path (all of them in one batch)
TRAIN_BATCH = 2  # PaddleSeg's ADE20K recipe: 2 images per card
TRAIN_FLOP_FACTOR = 3  # forward + backward (grad of inputs and of weights) ~ 3 forwards
MATMUL_REPEATS = 5
DECODER_LAYERS, HEAD_DIM = 2, 64  # the mask decoder of every released Segmenter: 2 blocks, heads = width // 64


def model_flops(d: int, depth: int, decoder: str, size: int = SIZE, p: int = PATCH, n_cls: int = N_CLS) -> float:
    """Multiply-add FLOPs (2 per MAC) of matmuls/convs of one forward at size x size (softmax/norms ignored)."""
    n = (size // p) ** 2
    t = n + 1
    f = 2 * n * 3 * p * p * d  # patch embedding

    def block(t: int, d: int) -> float:  # qkv, attention (scores and mix), proj, mlp
        return 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * 4 * d

    f += depth * block(t, d)
    if decoder == "linear":
        f += 2 * n * d * n_cls
    else:
        f += 2 * n * d * d + 2 * block(n + n_cls, d) + 2 * (n + n_cls) * d * d + 2 * n * n_cls * d
    return float(f)


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def build_ours(name: str):
    import paddle

    from segmenter.models import Segmenter, SegmenterViT

    d, depth, heads, dec = MODELS[name]
    paddle.seed(0)
    return Segmenter(N_CLS, SegmenterViT(embed_dim=d, depth=depth, num_heads=heads), decoder_cfg(name))


def build_twin(name: str):
    import torch

    from segmenter.pytorch import Segmenter, SegmenterViT

    d, depth, heads, dec = MODELS[name]
    torch.manual_seed(0)
    return Segmenter(N_CLS, SegmenterViT(embed_dim=d, depth=depth, num_heads=heads), decoder_cfg(name))


def decoder_cfg(name: str) -> dict:
    d, _, _, dec = MODELS[name]
    if dec == "linear":
        return {"name": dec}
    return {"name": dec, "n_layers": DECODER_LAYERS, "d_model": d, "n_heads": d // HEAD_DIM}


def build_peer(name: str):
    """PaddleSeg 2.8.0's own LinearSegmenter/MaskSegmenter. Its VisionTransformer crashes in init_weight when
    pretrained is None, so that method is replaced by a no-op (weights stay random; speed is unaffected)."""
    import paddleseg.models.backbones.vision_transformer as pvit
    from paddleseg.models import LinearSegmenter, MaskSegmenter

    pvit.VisionTransformer.init_weight = lambda self: None
    d, depth, heads, dec = MODELS[name]
    bb = pvit.VisionTransformer(
        img_size=SIZE,
        patch_size=16,
        embed_dim=d,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4,
        qkv_bias=True,
        final_norm=True,
    )
    if dec == "linear":
        return LinearSegmenter(N_CLS, bb)
    return MaskSegmenter(N_CLS, bb, h_embed_dim=d, h_depth=DECODER_LAYERS, h_num_heads=d // HEAD_DIM)


def child(path: str, name: str, repeats: int) -> dict:
    """Run one measurement in this process; returns {'seconds': ..., 'note': ...}."""
    import numpy as np

    if path == "matmul":
        import paddle
        import torch

        import segmenter  # noqa: F401  (configures paddle threads / MKL)

        n = MATMUL_N
        a = np.random.rand(n, n).astype("float32")
        pa, ta = paddle.to_tensor(a), torch.from_numpy(a)
        rp = 2 * n**3 / timed(lambda: (pa @ pa).numpy(), repeats) / 1e9
        rt = 2 * n**3 / timed(lambda: ta @ ta, repeats) / 1e9
        return {"paddle_gflops": rp, "torch_gflops": rt, "seconds": None}
    x = np.random.rand(1, 3, SIZE, SIZE).astype("float32")
    if path in ("twin", "twin_train"):
        import torch

        m = build_twin(name)
        if path == "twin":
            m.eval()
            tx = torch.from_numpy(x)
            with torch.no_grad():
                return {"seconds": timed(lambda: m(tx), repeats)}
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=1e-3)
        xb = torch.from_numpy(np.random.rand(TRAIN_BATCH, 3, SIZE, SIZE).astype("float32"))
        yb = torch.from_numpy(np.random.randint(0, N_CLS, (TRAIN_BATCH, SIZE, SIZE)).astype("int64"))

        def twin_step():
            loss = torch.nn.functional.cross_entropy(m(xb)[0], yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            float(loss)

        return {"seconds": timed(twin_step, repeats)}
    import paddle

    if path == "peer_defaults":
        os.environ["SEGMENTER_CPU_TUNING"] = "0"
    import segmenter  # noqa: F401

    if path in ("peer_defaults", "peer"):
        m = build_peer(name)
    else:
        m = build_ours(name)
    m.eval()
    if path in ("dygraph", "peer", "peer_defaults"):
        px = paddle.to_tensor(x)
        with paddle.no_grad():
            return {"seconds": timed(lambda: m(px)[0].numpy(), repeats)}
    if path == "deploy":
        from segmenter import deploy

        with tempfile.TemporaryDirectory() as tmp:
            deploy.export(m, os.path.join(tmp, "m"), (SIZE, SIZE), batch_size=None)
            pred = deploy.create_predictor(os.path.join(tmp, "m"))
            return {"seconds": timed(lambda: pred(x), repeats)}
    if path in ("slide_batched", "slide_single"):
        from segmenter.engine.infer import slide_logits  # the library's own slice inference (tools/val.py's)

        im = paddle.to_tensor(np.random.rand(1, 3, SIZE, SLIDE_WIDTH * SIZE).astype("float32"))
        wbs = WINDOW_BATCH if path == "slide_batched" else 1
        stride = (SLIDE_STRIDE, SLIDE_STRIDE)
        with paddle.no_grad():
            return {"seconds": timed(lambda: slide_logits(m, im, (SIZE, SIZE), stride, wbs).numpy(), repeats)}
    if path == "train":
        from segmenter.engine.losses import SegmenterCrossEntropyLoss

        ce = SegmenterCrossEntropyLoss()  # the engine's loss (F.cross_entropy over axis 1 is 3x slower on CPU)
        m.train()
        opt = paddle.optimizer.SGD(learning_rate=1e-3, parameters=m.parameters())
        xb = paddle.to_tensor(np.random.rand(TRAIN_BATCH, 3, SIZE, SIZE).astype("float32"))
        yb = paddle.to_tensor(np.random.randint(0, N_CLS, (TRAIN_BATCH, SIZE, SIZE)).astype("int64"))

        def step():
            loss = ce(m(xb)[0], yb)
            loss.backward()
            opt.step()
            opt.clear_grad()
            float(loss)

        return {"seconds": timed(step, repeats)}
    raise ValueError(f"unknown path {path}")


def run_child(path: str, name: str, repeats: int) -> dict:
    """Run one measurement in a fresh interpreter (its own peak RSS) on this same copy of the package."""
    cmd = [sys.executable, "-m", "benchmarks.paths", "--child", path, "--models", name, "--repeats", str(repeats)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in r.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"seconds": None, "note": f"failed rc={r.returncode}: {r.stderr.strip().splitlines()[-1:]}"}


def main(argv: Optional[List[str]] = None) -> None:
    from segmenter.engine.cli import Parser

    ap = Parser(__doc__.splitlines()[0], prog="tools/benchmark.py")
    ap.add_argument("--models", nargs="+", default=list(MODELS), help=f"models to time, of {', '.join(MODELS)}")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per path (the best is reported)")
    ap.add_argument("--json", default="benchmark.json", help="where the results are written as JSON")
    ap.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu; gpu needs a CUDA build of PaddlePaddle, then runs `versus --device gpu`",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.device == "gpu":  # the GPU rows are versus's; through the dispatcher, which imports topics by name
        import benchmarks as bench

        return bench.run(["versus", "--device", "gpu", "--repeats", str(a.repeats)])
    if a.child:
        res = child(a.child, a.models[0], a.repeats)
        res["peak_rss_mb"] = peak_mb()
        print("RESULT " + json.dumps(res))
        return
    from tqdm import tqdm

    mm = run_child("matmul", "-", MATMUL_REPEATS)
    best = max(mm["paddle_gflops"], mm["torch_gflops"])
    print(f"matmul {MATMUL_N}^3 fp32: paddle {mm['paddle_gflops']:.1f} GFLOP/s, torch {mm['torch_gflops']:.1f} GFLOP/s")
    jobs = [(p, n) for n in a.models for p in ("dygraph", "deploy", "twin", "peer", "peer_defaults")]
    jobs += [(p, a.models[0]) for p in ("slide_batched", "slide_single", "train", "twin_train")]
    rows = []
    for p, n in tqdm(jobs, desc="benchmark", file=sys.stderr):
        r = run_child(p, n, a.repeats)
        d, depth, _, dec = MODELS[n]
        per_forward = (
            TRAIN_BATCH * TRAIN_FLOP_FACTOR
            if p in ("train", "twin_train")
            else SLIDE_WINDOWS
            if p.startswith("slide")
            else 1
        )
        flops = model_flops(d, depth, dec) * per_forward
        r.update(path=p, model=n, gflop=flops / 1e9, floor_s=flops / (best * 1e9))
        r["x_floor"] = r["seconds"] / r["floor_s"] if r["seconds"] else None
        rows.append(r)
    print(f"{'model':14} {'path':14} {'GFLOP':>7} {'sec':>8} {'x floor':>8} {'peak MB':>8}  note")
    for r in rows:
        s = f"{r['seconds']:.3f}" if r["seconds"] else "-"
        xf = f"{r['x_floor']:.2f}" if r["x_floor"] else "-"
        print(
            f"{r['model']:14} {r['path']:14} {r['gflop']:7.1f} {s:>8} {xf:>8} {r.get('peak_rss_mb', 0):8.0f}  "
            f"{r.get('note', '')}"
        )
    sec = {(r["model"], r["path"]): r["seconds"] for r in rows}
    ratios = {}
    for n in a.models:
        for peer in ("peer", "peer_defaults"):
            if sec.get((n, peer)) and sec.get((n, "deploy")):
                ratios[f"{n} {peer}/deploy (target >= 3)"] = sec[(n, peer)] / sec[(n, "deploy")]
    for n in a.models:
        if sec.get((n, "twin")):
            ratios[f"{n} twin/floor (target <= 1.3)"] = sec[(n, "twin")] / next(
                r["floor_s"] for r in rows if r["model"] == n and r["path"] == "twin"
            )
        if sec.get((n, "deploy")):
            ratios[f"{n} deploy/floor (target <= 1.5)"] = sec[(n, "deploy")] / next(
                r["floor_s"] for r in rows if r["model"] == n and r["path"] == "deploy"
            )
    n0 = a.models[0]
    if sec.get((n0, "train")) and sec.get((n0, "twin_train")):
        ratios[f"{n0} paddle train/twin train (target <= 1.3)"] = sec[(n0, "train")] / sec[(n0, "twin_train")]
    if sec.get((n0, "slide_single")) and sec.get((n0, "slide_batched")):
        ratios[f"{n0} slide single/batched (target >= 1.2)"] = sec[(n0, "slide_single")] / sec[(n0, "slide_batched")]
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    with open(a.json, "w") as f:
        json.dump({"matmul": mm, "rows": rows, "ratios": ratios}, f, indent=1)
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()

"""Time and peak memory of one forward against the input size: ours (dygraph and the default path), the twin, the
official code and PaddleSeg's own model, each (path, size) in its own subprocess; a table, JSON and a PNG plot.

    python tools/benchmark.py scaling --official-root ~/src/segmenter [--threads 1] [--repeats 1]
        [--sizes 256 512 768 1024 1024x2048] [--png docs/img/scaling.png] [--json scaling.json]

ViT-S/16 linear, 150 classes, random weights, batch 1, every model built for the input size (no position-embedding
resampling anywhere). Each child imports one framework (torch's allocator beside paddle's left ~150 MB more of
paddle's heap resident at 512x512), and the forward's memory is the process's peak RSS (VmHWM) less its RSS once
the model is built while the forward's output is held as the framework's own tensor: what the forward (and, on the
default path, the export and predictor) added. `MB + host copy` repeats it with the logits taken to numpy as a user
would: `tensor.numpy()` copies in paddle (157 MB at 512x512), and shares the memory in torch. `HxW` sizes are
height x width.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import List, Optional, Tuple

import numpy as np

from benchmarks import ROOT
from benchmarks._turns import peak_mb
from benchmarks.paths import MODELS, N_CLS, PATCH
from segmenter.runtime import resident_mb

MODEL = "vit_s_linear"
PATHS = ("dygraph", "default", "twin", "official", "peer")
LABELS = {
    "dygraph": "ours, dygraph",
    "default": "ours, default path (compiled)",
    "twin": "our PyTorch twin",
    "official": "official (PyTorch)",
    "peer": "PaddleSeg 2.8 LinearSegmenter",
}
SIZES = ("256", "512", "768", "1024", "1024x2048")


def parse_size(s: str) -> Tuple[int, int]:
    h, _, w = s.partition("x")
    return int(h), int(w or h)


def child(path: str, size: Tuple[int, int], repeats: int, official_root: Optional[str], threads: Optional[int]):
    h, w = size
    x = np.random.RandomState(0).rand(1, 3, h, w).astype("float32")
    d, depth, heads, _ = MODELS[MODEL]
    if path in ("twin", "official"):  # torch alone in this process
        import torch

        from benchmarks import versus

        if threads:
            torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        no_grad = torch.no_grad

        if path == "twin":
            from segmenter.pytorch import Segmenter, SegmenterViT

            torch.manual_seed(0)
            m = Segmenter(
                N_CLS, SegmenterViT(img_size=[h, w], embed_dim=d, depth=depth, num_heads=heads), {"name": "linear"}
            ).eval()
            tx = torch.from_numpy(x)
            fn = lambda: m(tx)[0]  # noqa: E731
        else:
            m = versus.build_official(official_root, (h, w)).eval()
            tx = torch.from_numpy(x)
            fn = lambda: m(tx)  # noqa: E731
    else:  # paddle alone in this process
        import paddle

        import segmenter  # noqa: F401

        if threads:
            from segmenter.runtime import configure_cpu

            configure_cpu(num_threads=threads)
        no_grad = paddle.no_grad
        px = paddle.to_tensor(x)
        if path == "peer":
            import paddleseg.models.backbones.vision_transformer as pvit
            from paddleseg.models import LinearSegmenter

            pvit.VisionTransformer.init_weight = lambda self: None  # crashes without pretrained (REFERENCE.md)
            m = LinearSegmenter(
                N_CLS,
                pvit.VisionTransformer(
                    img_size=h,
                    patch_size=PATCH,
                    embed_dim=d,
                    depth=depth,
                    num_heads=heads,
                    mlp_ratio=4,
                    qkv_bias=True,
                    final_norm=True,
                ),
            )
        else:
            from segmenter.models import Segmenter, SegmenterViT

            paddle.seed(0)
            m = Segmenter(
                N_CLS, SegmenterViT(img_size=[h, w], embed_dim=d, depth=depth, num_heads=heads), {"name": "linear"}
            )
        m.eval()
        net = m
        if path == "default":
            from segmenter.engine.compiled import CompiledModel

            net = CompiledModel(m, compile_after=1, num_threads=threads)
        fn = lambda: net(px)[0]  # noqa: E731
    base = resident_mb()
    with no_grad():
        t0 = time.perf_counter()
        out = fn()  # warm-up (the default path compiles here)
        first = time.perf_counter() - t0
        del out
        # the default path compiles [MIN_TOKENS, MAX_TOKENS] tokens per image while the memory is there; other sizes
        # are its dygraph model, which the row says
        compiled = bool(net.predictors) if path == "default" else None
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t0)
            del out
        peak = peak_mb()
        host = fn().numpy()  # the logits as numpy, as a user takes them
        del host
    peak_host = peak_mb()
    out = {
        "seconds": statistics.median(ts),
        "first_call": first,
        "peak_rss_mb": peak,
        "added_mb": peak - base,
        "added_with_host_copy_mb": peak_host - base,
    }
    return dict(out, compiled=compiled) if path == "default" else out


def run_child(path: str, size: str, repeats: int, official_root: Optional[str], threads: Optional[int]) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--child", path, "--sizes", size, "--repeats", str(repeats)]
    cmd += ["--official-root", official_root] if official_root else []
    cmd += ["--threads", str(threads)] if threads else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in r.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"seconds": None, "note": f"failed rc={r.returncode}: {r.stderr.strip().splitlines()[-1:]}"}


def plot(rows: List[dict], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for p in PATHS:
        pts = [(r["tokens"], r["seconds"], r["added_mb"]) for r in rows if r["path"] == p and r.get("seconds")]
        if not pts:
            continue
        t, s, m = zip(*pts)
        axes[0].plot(t, s, "o-", label=LABELS[p])
        axes[1].plot(t, m, "o-", label=LABELS[p])
    for ax, name in zip(axes, ("seconds per forward", "peak memory added by the forward, MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # the minor ticks' labels ran into each other
        ax.set_xlabel("tokens (256, 512, 768, 1024 squares, 1024x2048)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{MODEL}, batch 1, CPU", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py scaling", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), help=f"sides or HxW (default: {' '.join(SIZES)})")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="default: all")
    ap.add_argument("--repeats", type=int, default=1, help="timed forwards after the warm-up (default: 1)")
    ap.add_argument(
        "--official-root",
        default=os.environ.get("SEGMENTER_OFFICIAL_ROOT"),
        help="a clone of rstrudel/segmenter (default: $SEGMENTER_OFFICIAL_ROOT; none: no official rows)",
    )
    ap.add_argument("--threads", type=int, default=None, help="math threads of both frameworks (default: one per core)")
    ap.add_argument("--json", default="scaling.json", help="default: scaling.json")
    ap.add_argument("--png", default="scaling.png", help="default: scaling.png")
    ap.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu (default); gpu needs a CUDA build of PaddlePaddle (the scaling runs are CPU-only)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.device == "gpu":
        from benchmarks.versus import require_device

        require_device("gpu")
        raise SystemExit(
            "tools/benchmark.py scaling: runs on the CPU; on a GPU run `tools/benchmark.py versus --device gpu`."
        )
    if a.child:
        res = child(a.child, parse_size(a.sizes[0]), a.repeats, a.official_root, a.threads)
        print("RESULT " + json.dumps(res))
        return
    paths = [p for p in a.paths if p != "official" or a.official_root]
    d, depth, _, _ = MODELS[MODEL]
    rows = []
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| size | tokens | GFLOP | " + " | ".join(f"{LABELS[p]} s / MB (MB + host copy)" for p in paths) + " |")
    print("|---|---|---|" + "---|" * len(paths))
    for s in a.sizes:
        h, w = parse_size(s)
        tokens = (h // PATCH) * (w // PATCH) + 1
        flops = _flops(d, depth, h, w)
        cells = []
        for p in paths:
            r = run_child(p, s, a.repeats, a.official_root, a.threads)
            r.update(path=p, size=s, tokens=tokens, gflop=flops / 1e9)
            rows.append(r)
            cell = (
                f"{r['seconds']:.2f} / {r['added_mb']:.0f} ({r['added_with_host_copy_mb']:.0f})"
                if r.get("seconds")
                else r.get("note", "-")
            )
            cells.append(cell + (" (dygraph)" if r.get("compiled") is False else ""))
        print(f"| {s} | {tokens} | {flops / 1e9:.0f} | " + " | ".join(cells) + " |", flush=True)
        with open(a.json, "w") as f:  # after every size: an interrupted run keeps the sizes it finished
            json.dump({"threads": a.threads, "rows": rows}, f, indent=1)
        plot(rows, a.png)
    print(f"wrote {a.json} and {a.png}")


def _flops(d: int, depth: int, h: int, w: int) -> float:
    """model_flops of the linear model for an h x w input (its square formula, with n = h/p * w/p tokens)."""
    n = (h // PATCH) * (w // PATCH)
    t = n + 1
    block = 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * 4 * d
    return float(2 * n * 3 * PATCH * PATCH * d + depth * block + 2 * n * d * N_CLS)


if __name__ == "__main__":
    main()

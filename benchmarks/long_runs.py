"""Resident memory over long runs: the demo server under a mixed load, the Inferencer, tools/val.py and
tools/predict.py over thousands of small images, each measured from outside its process (RSS of the process and
its children); an RSS curve per run as a table, a PNG and a JSON.

    python tools/benchmark.py long_runs [--cases demo inferencer val predict] [--requests 3000] [--clients 8]
        [--images 10000] [--val_images 20000] [--out output/long_runs] [--json F] [--png F]

The model is the quickstart config (random weights: memory does not depend on their values; slide windows of 64 px,
stride 32). The images are procedural pictures written once under --out: 480 small ones of random sizes (32-96 px a
side, multiples of 8, so sizes repeat; at most 4 windows each), which the val list and the predict folder reuse (a
20,000-line `type: Dataset` list; 10,000 hard links), and 20 large ones (256-288 px: 1024 patches and up, so the
compiled path's predictors are made, up to their cap), every 50th image of the Inferencer.

The demo case is issue 28's load: 8 clients sending uploads of random sizes (40-300 px, PNG and JPEG, slice and flip
on or off), attention clicks, garbage, truncated JPEGs, empty bodies and unknown ids (tests/demo_helpers.py
MixedLoad, every answer checked). Growth: the largest RSS after the warm-up (the demo's first sixth, 500 of 3000
requests; the first 10% of the others' images) minus the RSS at the warm-up's end.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from benchmarks import ROOT

CONFIG = os.path.join(ROOT, "configs", "quickstart", "segmenter_tiny_shapes_64.yml")
CASES = ("demo", "inferencer", "val", "predict")
PADDLE_CALLS = 20000  # tensors made from numpy per way, for the leak paddle_tensors measures
SMALL, LARGE = 480, 20  # pictures on disk: the small ones for every run, the large ones for the Inferencer's
SMALL_SIZES, LARGE_SIZES = (32, 96), (256, 288)  # px a side, multiples of 8 (sizes repeat)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tools/benchmark.py long_runs", description=__doc__.splitlines()[0])
    p.add_argument(
        "--cases",
        nargs="+",
        choices=CASES + ("paddle_tensors",),
        default=list(CASES),
        help="runs to measure (default: the four runs; paddle_tensors: the bytes paddle 3.3.1 keeps per tensor made "
        "from numpy, the slope of the runs' curves)",
    )
    p.add_argument("--requests", type=int, default=3000, help="demo: requests (default: 3000)")
    p.add_argument("--clients", type=int, default=8, help="demo: concurrent clients (default: 8)")
    p.add_argument("--images", type=int, default=10000, help="Inferencer and predict: images (default: 10000)")
    p.add_argument("--val_images", type=int, default=20000, help="val: lines of the val list (default: 20000)")
    p.add_argument("--out", default="output/long_runs", help="images, outputs and logs (default: output/long_runs)")
    p.add_argument("--json", default=None, help="write the curves here (default: <out>/long_runs.json)")
    p.add_argument("--png", default=None, help="plot the curves here (default: <out>/long_runs.png)")
    p.add_argument("--child", choices=["inferencer"], help=argparse.SUPPRESS)  # the measured process of a case
    p.add_argument("--data", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def rss_tree_mb(pid: int) -> float:
    """Resident memory (MB) of process pid and all its descendants."""
    from tests.demo_helpers import process_tree_mb

    return process_tree_mb(pid)


# -- the data -------------------------------------------------------------------------------------------------------
def make_data(out: str) -> Dict[str, str]:
    """SMALL + LARGE images and labels of random sizes, and the quickstart model's random weights (made once)."""
    from PIL import Image

    from segmenter.datasets.shapes import draw_sample
    from tests.demo_helpers import random_weights

    data = os.path.join(out, "data")
    paths = {"root": data, "weights": os.path.join(data, "random.pdparams"), "list": os.path.join(data, "all.txt")}
    if os.path.exists(paths["list"]):
        return paths
    os.makedirs(os.path.join(data, "images"), exist_ok=True)
    os.makedirs(os.path.join(data, "labels"), exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(SMALL + LARGE):
        lo, hi = SMALL_SIZES if i < SMALL else LARGE_SIZES
        h, w = (int(v) for v in rng.choice(np.arange(lo, hi + 1, 8), 2))
        img, label = draw_sample(np.random.default_rng(i), max(h, w), 4, (4.0, max(h, w) / 5))
        Image.fromarray(img[:h, :w]).save(os.path.join(data, "images", f"{i:04d}.png"))
        Image.fromarray(label[:h, :w].astype(np.uint8)).save(os.path.join(data, "labels", f"{i:04d}.png"))
        lines.append(f"images/{i:04d}.png labels/{i:04d}.png")
    random_weights(CONFIG, paths["weights"])
    with open(paths["list"] + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(paths["list"] + ".tmp", paths["list"])
    return paths


def val_config(paths: Dict[str, str], n: int) -> str:
    """The quickstart model on a `type: Dataset` val list of n lines (the small images, repeated)."""
    lines = open(paths["list"]).read().split()
    pairs = [f"{lines[2 * (k % SMALL)]} {lines[2 * (k % SMALL) + 1]}" for k in range(n)]
    val_list = os.path.join(paths["root"], f"val_{n}.txt")
    with open(val_list, "w") as f:
        f.write("\n".join(pairs) + "\n")
    cfg = os.path.join(paths["root"], f"val_{n}.yml")
    with open(cfg, "w") as f:
        f.write(
            f"_base_: {CONFIG}\n"
            "val_dataset:\n  _inherited_: False\n  type: Dataset\n"
            f"  dataset_root: {paths['root']}\n  val_path: {val_list}\n  num_classes: 4\n  mode: val\n"
            "  transforms:\n    - {type: Normalize, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}\n"
        )
    return cfg


def predict_folder(paths: Dict[str, str], n: int) -> str:
    """A folder of n image files: hard links to the small images."""
    folder = os.path.join(paths["root"], f"predict_{n}")
    if not os.path.isdir(folder):
        os.makedirs(folder + ".tmp", exist_ok=True)
        for k in range(n):
            src = os.path.join(paths["root"], "images", f"{k % SMALL:04d}.png")
            os.link(src, os.path.join(folder + ".tmp", f"{k:05d}.png"))
        os.replace(folder + ".tmp", folder)
    return folder


# -- the measured processes -----------------------------------------------------------------------------------------
PROGRESS = re.compile(r"^\[(\w+)\] (\d+)/(\d+) ")


def follow(cmd: List[str], log: str, every: int) -> List[Tuple[int, float]]:
    """Run cmd, reading its `[desc] i/total` progress lines; the RSS of its process tree at every `every` items."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    curve: List[Tuple[int, float]] = []
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        for line in proc.stdout:
            logf.write(line)
            m = PROGRESS.match(line)
            if m and int(m.group(2)) % every == 0:
                curve.append((int(m.group(2)), rss_tree_mb(proc.pid)))
        if proc.wait():
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {log}")
    return curve


def inferencer_child(paths: Dict[str, str], n: int) -> None:
    """The Inferencer over n images, whole image and slide windows in turn, one image a call as a stream; every
    50th a large one."""
    from PIL import Image

    import segmenter  # noqa: F401
    from segmenter import Inferencer
    from segmenter.engine.progress import progress

    whole = Inferencer(CONFIG, paths["weights"], is_slide=False)
    slide = Inferencer(CONFIG, paths["weights"], is_slide=True)
    for k in progress(range(n), n, "inferencer", every=100):
        i = SMALL + k // 50 % LARGE if k % 50 == 49 else k % SMALL
        img = np.asarray(Image.open(os.path.join(paths["root"], "images", f"{i:04d}.png")).convert("RGB"))
        (slide if k % 2 else whole)(img)


def run_demo(paths: Dict[str, str], a: argparse.Namespace) -> Dict:
    from segmenter.demo.browser import DemoProcess
    from tests.demo_helpers import MixedLoad

    server = DemoProcess(CONFIG, paths["weights"])
    try:
        load = MixedLoad(
            server.url, lambda: rss_tree_mb(server.proc.pid), a.requests, a.clients, every=50, deadline_s=4 * 3600
        ).run()
    finally:
        log = server.stop()
    with open(os.path.join(a.out, "demo.log"), "w") as f:
        f.write(log)
    lat = {k: [float(np.percentile(v, 50)), float(np.percentile(v, 99))] for k, v in load.latency_ms.items()}
    return {"curve": load.curve, "warmup": a.requests // 6, "counts": load.counts, "latency_ms_p50_p99": lat}


def run_case(case: str, paths: Dict[str, str], a: argparse.Namespace) -> Dict:
    if case == "demo":
        return run_demo(paths, a)
    tools, log = os.path.join(ROOT, "tools"), os.path.join(a.out, f"{case}.log")
    if case == "inferencer":
        cmd = [sys.executable, os.path.join(tools, "benchmark.py"), "long_runs", "--child", "inferencer"]
        cmd += ["--data", json.dumps(paths), "--images", str(a.images)]
        n = a.images
    elif case == "val":
        n = a.val_images
        cmd = [sys.executable, os.path.join(tools, "val.py"), "--config", val_config(paths, n)]
        cmd += ["--model_path", paths["weights"]]
    else:
        n = a.images
        cmd = [sys.executable, os.path.join(tools, "predict.py"), "--config", CONFIG, "--model_path", paths["weights"]]
        cmd += ["--image_path", predict_folder(paths, n), "--save_dir", os.path.join(a.out, "predicted")]
    return {"curve": follow(cmd, log, max(1, n // 100)), "warmup": n // 10}


def paddle_tensors() -> Dict[str, float]:
    """Resident bytes left per call by each way of making a paddle tensor from a numpy array (after a warm-up).
    Paddle 3.3.1's eager Tensor constructor keeps one Python list per call (its keyword names: 'value', 'place',
    ...), which to_tensor and from_dlpack both go through; assign does not."""
    import gc

    import paddle

    from segmenter.runtime import resident_mb

    a = np.zeros((1, 4, 96, 96), np.float32)
    ways = {
        "paddle.to_tensor": lambda: paddle.to_tensor(a),
        "paddle.utils.dlpack.from_dlpack": lambda: paddle.utils.dlpack.from_dlpack(a),
        "paddle.assign": lambda: paddle.assign(a),
    }
    out = {}
    for name, make in ways.items():
        for _ in range(1000):
            make()
        gc.collect()
        before = resident_mb()
        for _ in range(PADDLE_CALLS):
            make()
        gc.collect()
        out[name] = round((resident_mb() - before) * 2**20 / PADDLE_CALLS, 1)
        print(f"{name}: {out[name]:.0f} bytes kept per call over {PADDLE_CALLS}", flush=True)
    return out


# -- the report -----------------------------------------------------------------------------------------------------
def growth(result: Dict) -> Tuple[float, float, float]:
    """(RSS at the end of the warm-up, the largest RSS after it, their difference), MB."""
    after = [(k, v) for k, v in result["curve"] if k >= result["warmup"]]
    base = after[0][1]
    top = max(v for _, v in after)
    return base, top, top - base


def plot(results: Dict[str, Dict], path: str, load: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False, layout="constrained")
    for ax, (case, r) in zip(axes[0], results.items()):
        k, v = zip(*r["curve"])
        base, top, grew = growth(r)
        ax.plot(k, v, lw=1.2)
        ax.axvline(r["warmup"], color="grey", lw=0.8, ls="--")
        ax.set_title(f"{case}: +{grew:.0f} MB after {r['warmup']}", fontsize=10)
        ax.set_xlabel("requests" if case == "demo" else "images")
        ax.set_ylabel("resident memory, MB")
        ax.set_ylim(0, max(v) * 1.15)
        ax.grid(alpha=0.3)
    fig.suptitle(f"RSS over long runs (quickstart model; load average {load})", fontsize=11)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    a = parse_args(argv)
    if a.child == "inferencer":
        inferencer_child(json.loads(a.data), a.images)
        return 0
    os.makedirs(a.out, exist_ok=True)
    a.json = a.json or os.path.join(a.out, "long_runs.json")
    a.png = a.png or os.path.join(a.out, "long_runs.png")
    print(f"long_runs: {', '.join(a.cases)}; images, outputs and logs in {a.out}", flush=True)
    leaks = paddle_tensors() if "paddle_tensors" in a.cases else None
    a.cases = [c for c in a.cases if c != "paddle_tensors"]
    paths = make_data(a.out) if a.cases else {}
    load_before = os.getloadavg()[0]
    results = {}
    for case in a.cases:
        t0 = time.time()
        print(f"{case} ...", flush=True)
        results[case] = run_case(case, paths, a)
        results[case]["seconds"] = round(time.time() - t0, 1)
        base, top, grew = growth(results[case])
        print(
            f"{case}: {results[case]['curve'][-1][0]} in {results[case]['seconds']:.0f} s; RSS "
            + " ".join(f"{k}:{v:.0f}" for k, v in results[case]["curve"][:: max(1, len(results[case]["curve"]) // 12)])
            + f" ... {results[case]['curve'][-1][1]:.0f} MB; after {results[case]['warmup']}: {base:.0f} -> max "
            f"{top:.0f} MB (+{grew:.0f})",
            flush=True,
        )
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    if results:
        print("\n| run | count | seconds | RSS at warm-up end, MB | largest after, MB | growth, MB |")
        print("|---|---|---|---|---|---|")
        for case, r in results.items():
            base, top, grew = growth(r)
            print(f"| {case} | {r['curve'][-1][0]} | {r['seconds']:.0f} | {base:.0f} | {top:.0f} | {grew:+.0f} |")
        print(f"load average: {load}")
    with open(a.json, "w") as f:
        json.dump({"load": load, "results": results, "paddle_tensor_bytes_per_call": leaks}, f, indent=1)
    if results:
        plot(results, a.png, load)
    print(f"curves written to {a.json}" + (f" and {a.png}" if results else ""))
    return 0

"""Ours at bf16 against ours at fp32, the default path (engine/compiled.py) each, in its own process, taking turns.

    python tools/benchmark.py bf16 [--sizes 512 768] [--repeats 7] [--threads N] [--json out.json]

ViT-S/16 linear, 150 classes (the ADE20K config), random weights, batch 1. One worker process per precision and size,
each with every core (or --threads), builds the model, compiles its predictor and waits; the parent then asks them
in turn for one timed forward, rep by rep, with a pause between turns (REFERENCE.md, "Measuring speed against a
peer": the other runtime's OpenMP threads stop spinning). The medians' ratio is the figure; the load average is
printed beside it. `ours_forward(size, "bf16")` is "ours bf16" for a table of all contenders (benchmarks/versus.py).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from benchmarks import ROOT

PAUSE_S = 0.3  # between turns: the last worker's OpenMP threads go to sleep
GOAL = 0.55  # bf16 / fp32 (issue 29)


def ours_forward(size: int, precision: str = "bf16", threads: Optional[int] = None) -> Callable[[], np.ndarray]:
    """Ours through the default inference path at `precision` ("fp32" or "bf16"), ViT-S/16 linear with 150 classes
    at size x size, compiled and checked before it returns: each call runs one forward of a fixed random image
    [1, 3, size, size] and returns its logits [1, 150, size, size]. Call it in the process that times it."""
    import segmenter  # noqa: F401, I001  (runtime settings; first, so paddle's import warnings are filtered)
    import paddle

    from benchmarks.versus import build_ours
    from segmenter.engine.compiled import CompiledModel

    if threads:
        from segmenter.runtime import configure_cpu

        configure_cpu(num_threads=threads)
    paddle.set_grad_enabled(False)
    model = build_ours(size)
    model.eval()
    x = paddle.to_tensor(np.random.RandomState(size).rand(1, 3, size, size).astype("float32"))
    net = CompiledModel(model, compile_after=1, num_threads=threads, precision=precision)
    net(x)
    if (3, size, size) not in net.predictors:
        raise SystemExit(f"bf16 benchmark: ours at {precision} did not compile at {size}x{size} (warnings above)")
    return lambda: net(x)[0].numpy()


def worker(size: int, precision: str, threads: Optional[int]) -> None:
    """Serve timed forwards: after 'ready', each line read ('run') is answered with the forward's seconds."""
    fn = ours_forward(size, precision, threads)
    fn()  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t = time.perf_counter()
        fn()
        print(f"{time.perf_counter() - t:.6f}", flush=True)


def start(size: int, precision: str, threads: Optional[int]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.bf16", "--worker", str(size), precision]
    cmd += ["--threads", str(threads)] if threads else []
    p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        p.kill()
        raise SystemExit(f"bf16 benchmark: the {precision} worker at {size} did not start (it said {line!r})")
    return p


def taking_turns(size: int, repeats: int, threads: Optional[int]) -> Dict[str, List[float]]:
    """Seconds of `repeats` forwards per precision, the two worker processes taking turns (one started at a time, so
    compiling in one does not slow the other's)."""
    procs = {}
    try:
        for precision in ("fp32", "bf16"):
            procs[precision] = start(size, precision, threads)
        times: Dict[str, List[float]] = {k: [] for k in procs}
        for _ in range(repeats):
            for k, p in procs.items():
                time.sleep(PAUSE_S)
                p.stdin.write("run\n")
                p.stdin.flush()
                times[k].append(float(p.stdout.readline()))
        return times
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.stdin.close()
                p.wait(timeout=60)


def measure(sizes: List[int], repeats: int, threads: Optional[int] = None) -> dict:
    """Print the table of bf16 against fp32 at each size (taking_turns) and return its figures."""
    out = {"threads": threads, "rows": {}}
    print(f"ViT-S/16 linear, 150 classes, batch 1, default path; {repeats} turns each; {os.cpu_count()} cores")
    print("| size | fp32 s | bf16 s | bf16 / fp32 | load average (start, end) |\n|---|---|---|---|---|")
    for size in sizes:
        load0 = os.getloadavg()[0]
        t = taking_turns(size, repeats, threads)
        load1 = os.getloadavg()[0]
        med = {k: statistics.median(v) for k, v in t.items()}
        ratio = med["bf16"] / med["fp32"]
        out["rows"][str(size)] = {"seconds": med, "ratio": ratio, "runs": t, "load": [load0, load1]}
        print(f"| {size} | {med['fp32']:.3f} | {med['bf16']:.3f} | **{ratio:.2f}** | {load0:.1f}, {load1:.1f} |")
    met = all(r["ratio"] <= GOAL for r in out["rows"].values())
    print(f"goal bf16 / fp32 <= {GOAL}: {'met' if met else 'not met'}")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py bf16", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 768], help="input sides (default: 512 768)")
    ap.add_argument("--repeats", type=int, default=7, help="timed turns per precision after a warm-up (default: 7)")
    ap.add_argument("--threads", type=int, default=None, help="math threads per worker (default: every core)")
    ap.add_argument("--json", default=None, help="also write the figures here (default: none)")
    ap.add_argument("--worker", nargs=2, metavar=("SIZE", "PRECISION"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(int(a.worker[0]), a.worker[1], a.threads)
    from segmenter.runtime import check_precision

    try:
        check_precision("bf16", "tools/benchmark.py bf16:")
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    out = measure(a.sizes, a.repeats, a.threads)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()

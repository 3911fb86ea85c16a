"""Ours against the official PyTorch Segmenter, interleaved rep by rep in one process: a forward at each size
through our default path (engine/compiled.py), our dygraph model and the twin; or a training step (batch 2).

    python tools/benchmark.py versus --official-root ~/src/segmenter [--sizes 512 768] [--repeats 5]
    python tools/benchmark.py versus --official-root ~/src/segmenter --mode train [--repeats 3]

The official code is not a dependency: clone https://github.com/rstrudel/segmenter (it needs einops) and give its
root; without it the official rows are left out. ViT-S/16 linear, 150 classes (the ADE20K config), random weights.
Ratios are taken between the models' medians of the same run; the floor is the best of one paddle and one torch
2048^3 fp32 matmul timed in the same rounds.
"""

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from benchmarks.paths import MATMUL_N, MODELS, N_CLS, PATCH, TRAIN_BATCH, TRAIN_FLOP_FACTOR, model_flops

MODEL = "vit_s_linear"


def require_device(device: str) -> None:
    """Exit with one line unless this Paddle build can run on `device` ("cpu" or "gpu")."""
    import paddle

    if device == "gpu" and not paddle.device.is_compiled_with_cuda():
        raise SystemExit(
            f"tools/benchmark.py: --device gpu needs a CUDA build of PaddlePaddle; this paddlepaddle "
            f"{paddle.__version__} is CPU-only (install paddlepaddle-gpu from paddle's own index, or run "
            f"--device cpu)."
        )


def build_official(root: str, size: Union[int, Tuple[int, int]], name: str = MODEL):
    """The official Segmenter (segm/model of rstrudel/segmenter at `root`) for size (H, W), dropout 0."""
    import torch

    sys.path.insert(0, os.path.abspath(root))
    from segm.model.decoder import DecoderLinear, MaskTransformer
    from segm.model.segmenter import Segmenter
    from segm.model.vit import VisionTransformer

    d, depth, heads, dec = MODELS[name]
    torch.manual_seed(0)
    enc = VisionTransformer(
        tuple(size) if isinstance(size, (tuple, list)) else (size, size),
        PATCH,
        depth,
        d,
        4 * d,
        heads,
        N_CLS,
        dropout=0.0,
    )
    if dec == "linear":
        decoder = DecoderLinear(N_CLS, PATCH, d)
    else:
        decoder = MaskTransformer(N_CLS, PATCH, d, 2, d // 64, d, 4 * d, 0.0, 0.0)
    return Segmenter(enc, decoder, N_CLS)


def build_ours(size: int, name: str = MODEL):
    """Our Segmenter as the shipped ADE20K config builds it, its img_size at `size`."""
    import paddle

    from benchmarks.paths import decoder_cfg
    from segmenter.models import Segmenter, SegmenterViT

    d, depth, heads, _ = MODELS[name]
    paddle.seed(0)
    return Segmenter(N_CLS, SegmenterViT(img_size=size, embed_dim=d, depth=depth, num_heads=heads), decoder_cfg(name))


def build_twin(size: int, name: str = MODEL):
    import torch

    from benchmarks.paths import decoder_cfg
    from segmenter.pytorch import Segmenter, SegmenterViT

    d, depth, heads, _ = MODELS[name]
    torch.manual_seed(0)
    return Segmenter(N_CLS, SegmenterViT(img_size=size, embed_dim=d, depth=depth, num_heads=heads), decoder_cfg(name))


def interleaved(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, List[float]]:
    """Seconds of each fn, one warm-up each, then `repeats` rounds in which every fn runs once, in turn."""
    for fn in fns.values():
        fn()
    out: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t)
    return out


def matmul_fns(gpu: bool = False) -> Dict[str, Callable[[], object]]:
    import paddle
    import torch

    a = np.random.rand(MATMUL_N, MATMUL_N).astype("float32")
    pa, ta = paddle.to_tensor(a), torch.from_numpy(a).to("cuda" if gpu else "cpu")
    return {"matmul paddle": lambda: (pa @ pa).numpy(), "matmul torch": lambda: (ta @ ta).cpu()}


def forward_fns(
    size: int, official_root: Optional[str], gpu: bool = False, threads: Optional[int] = None
) -> Dict[str, Callable[[], object]]:
    """On the GPU: no exported predictor (the default path is the dygraph model there), torch on cuda; each fn
    ends by copying its logits to the host, which waits for the device."""
    import paddle
    import torch

    from segmenter.engine.compiled import CompiledModel
    from segmenter.models import layers

    x = np.random.RandomState(size).rand(1, 3, size, size).astype("float32")
    dev = "cuda" if gpu else "cpu"
    px, tx = paddle.to_tensor(x), torch.from_numpy(x).to(dev)
    ours = build_ours(size)
    ours.eval()
    twin = build_twin(size).eval().to(dev)
    fns = {"ours (dygraph)": lambda: ours(px)[0].numpy(), "twin": lambda: twin(tx)[0].cpu().numpy()}
    if not gpu and layers._fused_kernel_usable():  # what the fused attention kernel brings: the same model without it

        def explicit():
            prev, layers._FUSED["dygraph"] = layers._FUSED["dygraph"], False
            try:
                return ours(px)[0].numpy()
            finally:
                layers._FUSED["dygraph"] = prev

        fns["ours (dygraph, explicit attention)"] = explicit
    if not gpu:
        fast = CompiledModel(ours, compile_after=1, num_threads=threads)
        fns = {"ours (default path)": lambda: fast(px)[0].numpy(), **fns}
        with paddle.no_grad():
            fast(px)  # compiles (and returns the dygraph model's logits, its check's reference)
            d = float(np.abs(fast(px)[0].numpy() - ours(px)[0].numpy()).max())  # the predictor's
        if not fast.predictors:
            why = fast.failed or (
                "not enough memory available"
                if fast.skipped
                else f"{fast.tokens((3, size, size))} tokens per image, outside the compiled range "
                f"[{fast.min_tokens}, {fast.max_tokens}] (engine/compiled.py)"
            )
            raise SystemExit(f"versus: the default path did not compile at {size}x{size}: {why}")
        print(f"{size}x{size}: default path vs dygraph max|diff| {d:.2e}")
    if official_root:
        off = build_official(official_root, size).eval().to(dev)
        fns["official"] = lambda: off(tx).cpu().numpy()
    fns.update(matmul_fns(gpu))
    return fns


def train_fns(size: int, official_root: Optional[str]) -> Dict[str, Callable[[], object]]:
    import paddle
    import torch

    from segmenter.engine.losses import SegmenterCrossEntropyLoss

    rng = np.random.RandomState(0)
    x = rng.rand(TRAIN_BATCH, 3, size, size).astype("float32")
    y = rng.randint(0, N_CLS, (TRAIN_BATCH, size, size)).astype("int64")
    px, py, tx, ty = paddle.to_tensor(x), paddle.to_tensor(y), torch.from_numpy(x), torch.from_numpy(y)
    ce = SegmenterCrossEntropyLoss()

    def paddle_step(m):
        m.train()
        opt = paddle.optimizer.SGD(learning_rate=1e-3, parameters=m.parameters())

        def step():
            loss = ce(m(px)[0], py)
            loss.backward()
            opt.step()
            opt.clear_grad()
            return float(loss)

        return step

    def torch_step(m, logits):
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=1e-3)

        def step():
            loss = torch.nn.functional.cross_entropy(logits(m), ty)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return float(loss)

        return step

    paddle.set_flags({"FLAGS_new_executor_sequential_run": True})  # as engine.train does under to_static
    fns = {
        "ours (dygraph)": paddle_step(build_ours(size)),
        "ours (to_static)": paddle_step(paddle.jit.to_static(build_ours(size), full_graph=True)),
        "twin": torch_step(build_twin(size), lambda m: m(tx)[0]),
    }
    if official_root:
        fns["official"] = torch_step(build_official(official_root, size), lambda m: m(tx))
    fns.update(matmul_fns())
    return fns


def matmul_gflops(times: Dict[str, List[float]]) -> float:
    """The best rate of matmul_fns' two products (paddle, torch) in `interleaved` times: the floor's rate."""
    return max(2 * MATMUL_N**3 / statistics.median(times[k]) / 1e9 for k in ("matmul paddle", "matmul torch"))


def report(title: str, times: Dict[str, List[float]], flops: float) -> Dict[str, dict]:
    med = {k: statistics.median(v) for k, v in times.items()}
    gflops = matmul_gflops(times)
    floor = flops / (gflops * 1e9)
    print(f"\n{title}; matmul floor {gflops:.1f} GFLOP/s -> {floor:.3f} s")
    print("| path | s (median) | / official | x floor | runs |\n|---|---|---|---|---|")
    rows = {}
    for k, v in times.items():
        if k.startswith("matmul"):
            continue
        rel = med[k] / med["official"] if "official" in med else None
        rows[k] = {"seconds": med[k], "vs_official": rel, "x_floor": med[k] / floor, "runs": v}
        print(
            f"| {k} | {med[k]:.3f} | {'-' if rel is None else f'{rel:.2f}'} | {med[k] / floor:.2f} | "
            f"{', '.join(f'{t:.3f}' for t in v)} |"
        )
    return {"floor_gflops": gflops, "floor_s": floor, "rows": rows}


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py versus", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--official-root",
        default=os.environ.get("SEGMENTER_OFFICIAL_ROOT"),
        help="a clone of rstrudel/segmenter (default: $SEGMENTER_OFFICIAL_ROOT; none: no official rows)",
    )
    ap.add_argument("--mode", choices=("forward", "train"), default="forward")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 768], help="input sides (default: 512 768)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds after the warm-up (default: 5)")
    ap.add_argument(
        "--device", choices=("cpu", "gpu"), default="cpu", help="cpu (default); gpu needs a CUDA build of PaddlePaddle"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="math threads of both frameworks (default: segmenter.runtime's, one per core); on a "
        "loaded machine torch's OpenMP regions stall far more than paddle's at 2 threads: use 1",
    )
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    require_device(a.device)
    import paddle
    import torch

    import segmenter  # noqa: F401  (runtime settings)

    if a.threads:
        from segmenter.runtime import configure_cpu

        configure_cpu(num_threads=a.threads)
        torch.set_num_threads(a.threads)
    print(
        f"threads: paddle {segmenter.runtime.cpu_settings().get('num_threads')}, torch {torch.get_num_threads()}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if a.device == "gpu":  # not run here (no CUDA build of Paddle 3.x on the package index): docs/benchmarks.md
        if a.mode == "train":
            raise SystemExit("tools/benchmark.py versus: --mode train runs on the CPU only; drop --device gpu.")
        paddle.set_device("gpu")
    d, depth, _, dec = MODELS[MODEL]
    out = {}
    forward = a.mode == "forward"
    torch.set_grad_enabled(not forward)
    with paddle.set_grad_enabled(not forward):
        for size in a.sizes if a.mode == "forward" else a.sizes[:1]:
            fns = (
                forward_fns(size, a.official_root, a.device == "gpu", a.threads)
                if a.mode == "forward"
                else train_fns(size, a.official_root)
            )
            flops = model_flops(d, depth, dec, size) * (TRAIN_BATCH * TRAIN_FLOP_FACTOR if a.mode == "train" else 1)
            title = (
                f"{MODEL} {a.mode} {size}x{size}"
                + (f", batch {TRAIN_BATCH}" if a.mode == "train" else "")
                + f", {a.repeats} interleaved rounds"
            )
            out[f"{a.mode} {size}"] = report(title, interleaved(fns, a.repeats), flops)
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()

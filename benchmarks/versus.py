"""Ours against the official PyTorch Segmenter and what a deployer would run instead, each in its own process with
every core, taking turns rep by rep (benchmarks/_turns.py), against the fp32 and bf16 floors of the same rounds.

    python tools/benchmark.py versus --official-root DIR [--sizes 512 768] [--repeats 5]
    python tools/benchmark.py versus --official-root DIR --mode train [--repeats 3]

Forward rows (ViT-S/16 linear, 150 classes, batch 1, random weights): ours through the default path (fp32, the
compiled oneDNN predictor), ours in bf16 (our export on paddle's oneDNN bf16 predictor), our ONNX export in
onnxruntime, the official model eager in fp32 and under `torch.autocast(bfloat16)`, under `torch.compile`, and
exported by `torch.onnx.export` into onnxruntime. The floors: the model's matmul FLOPs (benchmarks.paths.model_flops)
over the best rate a 2048^3 GEMM reaches in the same rounds, fp32 (oneDNN through a paddle predictor of one matmul,
torch, numpy) and bf16 (torch, the oneDNN bf16 predictor), each GEMM in its own process too.
Train rows (batch 2, SGD momentum 0.9 as the shipped recipe, the configs' CrossEntropyLoss; official: torch's
cross_entropy): ours in dygraph (and `to_static_training` with --paths), the twin, the official code.

The official code is not a dependency: give a checkout of https://github.com/rstrudel/segmenter (it needs einops;
`fetch` it, or git clone) with --official-root; without it the official rows are left out.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from benchmarks._turns import Contender, compare, run_turns
from benchmarks.paths import MATMUL_N, MODELS, N_CLS, PATCH, TRAIN_BATCH, TRAIN_FLOP_FACTOR, model_flops

MODEL = "vit_s_linear"
GEMM_REPS = 3  # products per GEMM turn (one 2048^3 product is ~0.05-0.2 s here)

# name -> (worker function, its extra arguments, the floor it is measured against, what it needs)
FORWARD_PATHS: Dict[str, Tuple[str, dict, str, str]] = {
    "ours fp32 (default path)": ("ours_default", {}, "fp32", ""),
    "ours bf16 (oneDNN bf16 predictor)": ("ours_bf16", {}, "bf16", ""),
    "ours ONNX, onnxruntime": ("ours_onnx", {}, "fp32", ""),
    "ours dygraph": ("ours_dygraph", {}, "fp32", ""),
    "twin (PyTorch)": ("twin", {}, "fp32", ""),
    "official eager fp32": ("official", {}, "fp32", "official"),
    "official eager bf16 autocast": ("official", {"bf16": True}, "bf16", "official"),
    "official torch.compile": ("official", {"compiled": True}, "fp32", "official"),
    "official ONNX, onnxruntime": ("official_onnx", {}, "fp32", "official"),
}
DEFAULT_FORWARD = [k for k in FORWARD_PATHS if k not in ("ours dygraph", "twin (PyTorch)")]
GPU_FORWARD = ["ours dygraph", "twin (PyTorch)", "official eager fp32", "official eager bf16 autocast"]
TRAIN_PATHS: Dict[str, Tuple[str, dict, str, str]] = {
    "ours dygraph": ("ours_train", {}, "fp32", ""),
    "ours to_static": ("ours_train", {"static": True}, "fp32", ""),
    "twin (PyTorch)": ("twin_train", {}, "fp32", ""),
    "official": ("official_train", {}, "fp32", "official"),
}
DEFAULT_TRAIN = ["ours dygraph", "official"]
GEMMS: Dict[str, Tuple[str, str]] = {  # name -> (library, dtype)
    "GEMM oneDNN fp32 (paddle predictor)": ("onednn", "fp32"),
    "GEMM torch fp32": ("torch", "fp32"),
    "GEMM numpy fp32": ("numpy", "fp32"),
    "GEMM torch bf16": ("torch", "bf16"),
    "GEMM oneDNN bf16 (paddle predictor)": ("onednn", "bf16"),
}


def require_device(device: str) -> None:
    """Exit with one line unless this Paddle build can run on `device` ("cpu" or "gpu")."""
    import paddle

    if device == "gpu" and not paddle.device.is_compiled_with_cuda():
        raise SystemExit(
            f"tools/benchmark.py: --device gpu needs a CUDA build of PaddlePaddle; this paddlepaddle "
            f"{paddle.__version__} is CPU-only (install paddlepaddle-gpu from paddle's own index, or run "
            f"--device cpu)."
        )


# --- the models, as each side builds them ----------------------------------------------------------------------


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


def paddle_runtime() -> None:
    """Call first in a paddle contender's process: segmenter's runtime settings on the threads the driver gave it.
    segmenter reads OMP_NUM_THREADS only when imported before paddle (whose import sets it to 1 when unset)."""
    import segmenter.runtime  # noqa: F401  (the package: runtime first, then paddle, then configure_at_import)


def build_ours(size: int, name: str = MODEL):
    """Our Segmenter as the shipped ADE20K config builds it, its img_size at `size`."""
    paddle_runtime()
    import paddle

    from benchmarks.paths import decoder_cfg
    from segmenter.models import Segmenter, SegmenterViT

    d, depth, heads, _ = MODELS[name]
    paddle.seed(0)
    return Segmenter(N_CLS, SegmenterViT(img_size=size, embed_dim=d, depth=depth, num_heads=heads), decoder_cfg(name))


def build_twin(size: int, name: str = MODEL):
    """Our PyTorch twin, in a process without paddle (benchmarks._turns.torch_only)."""
    from benchmarks._turns import torch_only

    torch_only()
    import torch

    from benchmarks.paths import decoder_cfg
    from segmenter.pytorch import Segmenter, SegmenterViT

    d, depth, heads, _ = MODELS[name]
    torch.manual_seed(0)
    return Segmenter(N_CLS, SegmenterViT(img_size=size, embed_dim=d, depth=depth, num_heads=heads), decoder_cfg(name))


def image(size: int, batch: int = 1) -> np.ndarray:
    return np.random.RandomState(size).rand(batch, 3, size, size).astype("float32")


# --- forward contenders (run in their own process by benchmarks._turns) ----------------------------------------


def ours_default(size: int, **_):
    """Our default path: the compiled oneDNN predictor (engine/compiled.py), compiled on the first call."""
    paddle_runtime()
    import paddle

    from segmenter.engine.compiled import CompiledModel

    m = build_ours(size)
    m.eval()
    x = paddle.to_tensor(image(size))
    fast = CompiledModel(m, compile_after=1)
    paddle.set_grad_enabled(False)
    fast(x)  # compiles (and returns the dygraph model's logits, its check's reference)
    if not fast.predictors:
        why = fast.failed or (
            "not enough memory available"
            if fast.skipped
            else f"{fast.tokens((3, size, size))} tokens per image, outside the compiled range "
            f"[{fast.min_tokens}, {fast.max_tokens}] (engine/compiled.py)"
        )
        raise RuntimeError(f"the default path did not compile at {size}x{size}: {why}")
    pred = next(iter(fast.predictors.values()))
    return (lambda: fast(x)[0]), {"predictor": "oneDNN" if pred.use_onednn else "MKL"}


def ours_bf16(size: int, **_):
    """Ours at bf16 through the product's path (`--precision bf16`: engine/compiled.py's CompiledModel compiles the
    oneDNN bf16 predictor and checks it against the dygraph model), timed as ours_default is."""
    paddle_runtime()
    import paddle

    from segmenter.engine.compiled import CompiledModel

    m = build_ours(size)
    m.eval()
    x = paddle.to_tensor(image(size))
    fast = CompiledModel(m, compile_after=1, precision="bf16")
    paddle.set_grad_enabled(False)
    fast(x)
    if (3, size, size) not in fast.predictors:
        raise RuntimeError(f"ours at bf16 did not compile at {size}x{size}: {fast.failed or 'see the warnings'}")
    return (lambda: fast(x)[0]), {"cpu_bf16": cpu_has("avx512_bf16") or cpu_has("amx_bf16")}


def cpu_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(flag in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


def ours_onnx(size: int, **_):
    paddle_runtime()
    from segmenter import deploy

    m = build_ours(size)
    m.eval()
    path = deploy.export_onnx(m, os.path.join(tempfile.mkdtemp(prefix="segmenter_onnx_"), "m.onnx"), (size, size))
    sess = deploy.create_onnx_session(path)
    x = image(size)
    return (lambda: sess.run(None, {"x": x})[0]), {"onnxruntime": __import__("onnxruntime").__version__}


def ours_dygraph(size: int, device: str = "cpu", **_):
    """Our model in dygraph; on a GPU build with device "gpu", on the GPU (each rep ends copying to the host)."""
    paddle_runtime()
    import paddle

    if device == "gpu":
        paddle.set_device("gpu")
    m = build_ours(size)
    m.eval()
    paddle.set_grad_enabled(False)
    x = paddle.to_tensor(image(size))
    return (lambda: m(x)[0].numpy() if device == "gpu" else m(x)[0]), {}


def torch_run(m, x, device: str, bf16: bool = False):
    """One rep of torch model m on x (on `device`: "cpu", or "gpu" = cuda, ending with a copy to the host)."""
    import torch

    dev = "cuda" if device == "gpu" else "cpu"
    m, x = m.to(dev), torch.from_numpy(x).to(dev)

    def run():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            out = m(x)
        out = out[0] if isinstance(out, list) else out
        return out.cpu() if dev == "cuda" else out

    return run


def twin(size: int, device: str = "cpu", **_):
    import torch

    torch.set_grad_enabled(False)
    return torch_run(build_twin(size).eval(), image(size), device), {}


def official(size: int, root: str, bf16: bool = False, compiled: bool = False, device: str = "cpu"):
    """The official model eager (fp32, or bf16 under torch.autocast) or under torch.compile (inductor)."""
    import torch

    m = build_official(root, size).eval()
    torch.set_grad_enabled(False)
    if compiled:
        m = torch.compile(m)
    return torch_run(m, image(size), device, bf16), {"torch": torch.__version__}


def official_onnx(size: int, root: str):
    """The official model exported by torch.onnx.export (the TorchScript exporter, opset 17) in onnxruntime."""
    import onnxruntime as ort
    import torch

    m = build_official(root, size).eval()
    x = image(size)
    path = os.path.join(tempfile.mkdtemp(prefix="segmenter_official_onnx_"), "official.onnx")
    with torch.no_grad():
        torch.onnx.export(m, (torch.from_numpy(x),), path, opset_version=17, input_names=["x"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))  # every core (segmenter.runtime would load paddle)
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    info = {"onnxruntime": ort.__version__, "ort_threads": opts.intra_op_num_threads}
    return (lambda: sess.run(None, {"x": x})[0]), info


def gemm(lib: str, dtype: str, n: int = MATMUL_N, reps: int = GEMM_REPS):
    """One n^3 product `reps` times per turn (the turn's seconds / reps is one product's)."""
    a = np.random.RandomState(0).rand(n, n).astype("float32")
    if lib == "numpy":
        run = lambda: a @ a  # noqa: E731
    elif lib == "torch":
        import torch

        t = torch.from_numpy(a).to(torch.bfloat16 if dtype == "bf16" else torch.float32)
        run = lambda: t @ t  # noqa: E731
    else:  # oneDNN's inner product / matmul through a paddle predictor of one matmul, as the model's fc runs it
        paddle_runtime()
        import paddle
        import paddle.inference as paddle_infer

        from segmenter import deploy

        class MatMul(paddle.nn.Layer):
            def __init__(self):
                super().__init__()
                self.w = self.create_parameter([n, n], default_initializer=paddle.nn.initializer.Assign(a))

            def forward(self, x):
                return [paddle.matmul(x, self.w)]

        prefix = os.path.join(tempfile.mkdtemp(prefix="segmenter_gemm_"), "mm")
        spec = paddle.static.InputSpec([n, n], "float32", "x")
        paddle.jit.save(paddle.jit.to_static(MatMul(), input_spec=[spec], full_graph=True), prefix)
        config = deploy.predictor_config(prefix, None, True)
        if dtype == "bf16":
            config.enable_onednn_bfloat16()
        config.disable_glog_info()
        pred = paddle_infer.create_predictor(config)
        x = paddle.to_tensor(a)
        run = lambda: pred.run([x])  # noqa: E731

    def turn():
        for _ in range(reps):
            run()

    return turn, {"n": n, "reps": reps}


# --- train contenders --------------------------------------------------------------------------------------------


def batch(size: int):
    rng = np.random.RandomState(0)
    x = rng.rand(TRAIN_BATCH, 3, size, size).astype("float32")
    y = rng.randint(0, N_CLS, (TRAIN_BATCH, size, size)).astype("int64")
    return x, y


def ours_train(size: int, static: bool = False, **_):
    """One step of engine.train.train_step on our model: the shipped configs' loss and optimizer (SGD momentum 0.9),
    dygraph, or through paddle.jit.to_static as `to_static_training: True` runs it."""
    paddle_runtime()
    import paddle

    from segmenter.engine.losses import CrossEntropyLoss
    from segmenter.engine.train import train_step

    m = build_ours(size)
    m.train()
    net = m
    if static:
        paddle.set_flags({"FLAGS_new_executor_sequential_run": True})  # as engine.train does under to_static
        net = paddle.jit.to_static(m, full_graph=True)
    opt = paddle.optimizer.Momentum(learning_rate=1e-3, momentum=0.9, parameters=m.parameters(), weight_decay=0.0)
    x, y = batch(size)
    px, py = paddle.to_tensor(x), paddle.to_tensor(y)
    ce = CrossEntropyLoss()
    it = [0]

    def step():
        it[0] += 1
        return train_step(net, px, py, ce, opt, None, None, 0, it[0], "-")[0]

    return step, {}


def torch_step(m, x, y, logits):
    import torch

    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        loss = torch.nn.functional.cross_entropy(logits(m, tx), ty, ignore_index=255)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return float(loss)

    return step


def twin_train(size: int, **_):
    x, y = batch(size)
    return torch_step(build_twin(size), x, y, lambda m, t: m(t)[0]), {}


def official_train(size: int, root: str):
    x, y = batch(size)
    return torch_step(build_official(root, size), x, y, lambda m, t: m(t)), {}


# --- one-process helpers (benchmarks.cityscapes: our paths alone, no other runtime in the process) ---------------


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


def matmul_gflops(times: Dict[str, List[float]]) -> float:
    """The best rate of matmul_fns' two products (paddle, torch) in `interleaved` times: the floor's rate."""
    return max(2 * MATMUL_N**3 / statistics.median(times[k]) / 1e9 for k in ("matmul paddle", "matmul torch"))


# --- the driver --------------------------------------------------------------------------------------------------


def contenders(names: List[str], table: dict, size: int, root: Optional[str], device: str = "cpu") -> List[Contender]:
    out = []
    for name in names:
        fn, kw, _, needs = table[name]
        if needs == "official" and not root:
            continue
        kw = dict(kw, size=size, **({"root": os.path.abspath(root)} if needs == "official" else {}))
        if device != "cpu":
            kw["device"] = device
        out.append(Contender(name, f"benchmarks.versus:{fn}", kw))
    return out


def gemm_contenders(names: List[str]) -> List[Contender]:
    return [Contender(k, "benchmarks.versus:gemm", {"lib": GEMMS[k][0], "dtype": GEMMS[k][1]}) for k in names]


def report(title: str, res: Dict[str, dict], table: dict, flops: float, reference: str) -> dict:
    """Print one size's table: each path's median, its ratio to `reference` and to its floor; the GEMM rates."""
    rates = {k: 2 * MATMUL_N**3 * GEMM_REPS / r["median"] / 1e9 for k, r in res.items() if k in GEMMS and r.get("runs")}
    floors = {}
    for prec in ("fp32", "bf16"):
        best = max(((v, k) for k, v in rates.items() if GEMMS[k][1] == prec), default=None)
        if best:
            floors[prec] = {"gflops": best[0], "by": best[1], "seconds": flops / (best[0] * 1e9)}
    print(f"\n{title}")
    for prec, f in floors.items():
        print(f"{prec} floor: {flops / 1e9:.1f} GFLOP at {f['gflops']:.0f} GFLOP/s ({f['by']}) = {f['seconds']:.3f} s")
    print(
        f"| path | s (median) | / {reference} | x floor | CPU s (median) | CPU / {reference} | peak MB | runs |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    ref = res.get(reference, {}).get("median")
    ref_cpu = res.get(reference, {}).get("cpu_median")
    rows = {}
    for k, r in res.items():
        if k in GEMMS:
            continue
        if not r.get("median"):
            print(f"| {k} | failed: {r.get('error', 'no runs')} | | | | | | |")
            rows[k] = {"error": r.get("error")}
            continue
        floor = floors.get(table[k][2], {}).get("seconds")
        rel = r["median"] / ref if ref else None
        xf = r["median"] / floor if floor else None
        cpu_rel = r["cpu_median"] / ref_cpu if ref_cpu else None
        rows[k] = dict(r, vs_reference=rel, cpu_vs_reference=cpu_rel, x_floor=xf, floor=table[k][2])
        print(
            f"| {k} | {r['median']:.3f} | {'-' if rel is None else f'{rel:.2f}'} | {'-' if xf is None else f'{xf:.2f}'}"
            f" | {r['cpu_median']:.3f} | {'-' if cpu_rel is None else f'{cpu_rel:.2f}'} | {r.get('peak_mb') or 0:.0f}"
            f" | {', '.join(f'{t:.3f}' for t in r['runs'])} |"
        )
    for k, g in rates.items():
        print(f"  {k}: {g:.0f} GFLOP/s (runs {', '.join(f'{t / GEMM_REPS:.3f}' for t in res[k]['runs'])} s)")
    return {"flops": flops, "floors": floors, "gemm_gflops": rates, "rows": rows}


def checks(res: Dict[str, dict], pairs: List[Tuple[str, str]]) -> Dict[str, dict]:
    """max|a - b| and arg-max agreement of the first outputs of the pairs (a, b) that both saved theirs."""
    out = {}
    for a, b in pairs:
        pa, pb = res.get(a, {}).get("output"), res.get(b, {}).get("output")
        if pa and pb and os.path.exists(pa) and os.path.exists(pb):
            d, scale, agree = compare(pa, pb)
            out[f"{a} vs {b}"] = {"max_abs_diff": d, "max_abs_ref": scale, "argmax_agree": agree}
            print(f"  {a} vs {b}: max|diff| {d:.2e} (max|logits| {scale:.2f}), arg-max agreement {100 * agree:.2f}%")
    return out


CHECK_PAIRS = [
    ("ours bf16 (oneDNN bf16 predictor)", "ours fp32 (default path)"),
    ("ours ONNX, onnxruntime", "ours fp32 (default path)"),
    ("ours dygraph", "ours fp32 (default path)"),
    ("official eager bf16 autocast", "official eager fp32"),
    ("official torch.compile", "official eager fp32"),
    ("official ONNX, onnxruntime", "official eager fp32"),
]


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py versus", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--official-root",
        default=os.environ.get("SEGMENTER_OFFICIAL_ROOT"),
        help="a checkout of rstrudel/segmenter (default: $SEGMENTER_OFFICIAL_ROOT; none: no official rows)",
    )
    ap.add_argument("--mode", choices=("forward", "train"), default="forward", help="forward (default) or train")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 768], help="input sides (default: 512 768)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds after each warm-up (default: 5)")
    ap.add_argument(
        "--paths",
        nargs="+",
        default=None,
        help=f"rows to run (forward default: {', '.join(DEFAULT_FORWARD)}; also 'ours dygraph', 'twin (PyTorch)'; "
        f"train default: {', '.join(DEFAULT_TRAIN)}; also 'ours to_static', 'twin (PyTorch)')",
    )
    ap.add_argument(
        "--gemms", nargs="*", default=None, help=f"floor GEMMs (default: all of {', '.join(GEMMS)}; none: no floors)"
    )
    ap.add_argument("--pause", type=float, default=0.3, help="seconds before each turn (default: 0.3)")
    ap.add_argument(
        "--min-free-mb",
        type=float,
        default=2048.0,
        help="start a contender only with this much memory available (default: 2048); its row says if it was not",
    )
    ap.add_argument(
        "--device", choices=("cpu", "gpu"), default="cpu", help="cpu (default); gpu needs a CUDA build of PaddlePaddle"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="math threads of every contender (OMP_NUM_THREADS in its process; default: every core). One thread each "
        "is the load-robust check: on a loaded machine torch's two-thread regions spin while a core is taken",
    )
    ap.add_argument(
        "--baseline-root",
        default=None,
        help="another checkout of this project (e.g. a git worktree of an older commit): each of our rows runs from "
        "it too, as '<row> @baseline', taking turns with the rest (default: none)",
    )
    ap.add_argument("--json", default=None, help="also write the figures here (default: none)")
    a = ap.parse_args(argv)
    if a.device == "gpu":  # (paddle is imported by the workers, not here: see benchmarks._turns._USER_OMP)
        require_device(a.device)
    table = FORWARD_PATHS if a.mode == "forward" else TRAIN_PATHS
    names = a.paths or (DEFAULT_FORWARD if a.mode == "forward" else DEFAULT_TRAIN)
    if a.device == "gpu":  # not run here (no CUDA build of Paddle 3.x on the package index): docs/benchmarks.md
        if a.mode == "train":
            raise SystemExit("tools/benchmark.py versus: --mode train runs on the CPU only; drop --device gpu.")
        names = [n for n in a.paths or GPU_FORWARD if n in GPU_FORWARD]
        a.gemms = a.gemms or []
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"error: tools/benchmark.py versus: unknown path(s) {unknown}; choose from {list(table)}")
    gemms = list(GEMMS) if a.gemms is None else a.gemms
    reference = "official eager fp32" if a.mode == "forward" else "official"
    if not a.official_root:
        reference = names[0]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; every contender in its own process")
    d, depth, _, dec = MODELS[MODEL]
    out = {"load_average_start": os.getloadavg()[0], "mode": a.mode, "threads": a.threads or "every core"}
    for size in a.sizes if a.mode == "forward" else a.sizes[:1]:
        flops = model_flops(d, depth, dec, size) * (TRAIN_BATCH * TRAIN_FLOP_FACTOR if a.mode == "train" else 1)
        cs = contenders(names, table, size, a.official_root, a.device)
        if a.baseline_root:  # the same rows of ours from the other checkout
            root = os.path.abspath(a.baseline_root)
            ours = [c for c in cs if "root" not in c.kwargs]  # (the official rows take the official checkout)
            cs += [Contender(f"{c.name} @baseline", c.target, c.kwargs, root=root) for c in ours]
            table = {**table, **{f"{k} @baseline": v for k, v in table.items()}}
        cs += gemm_contenders(gemms)
        for c in cs if a.threads else []:
            c.env["OMP_NUM_THREADS"] = str(a.threads)
        with tempfile.TemporaryDirectory(prefix="segmenter_versus_") as tmp:
            print(f"{size}x{size}: starting {len(cs)} processes")
            res = run_turns(
                cs, a.repeats, a.pause, save_dir=tmp if a.mode == "forward" else None, min_free_mb=a.min_free_mb
            )
            title = (
                f"{MODEL} {a.mode} {size}x{size}"
                + (f", batch {TRAIN_BATCH}" if a.mode == "train" else ", batch 1")
                + f", {a.repeats} rounds, load average {os.getloadavg()[0]:.1f} at the end"
            )
            out[f"{a.mode} {size}"] = rep = report(title, res, table, flops, reference)
            if a.mode == "forward":
                rep["checks"] = checks(res, CHECK_PAIRS)
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()

"""ViT-B/16 UPerNet (MultiLevelNeck, MMSeg's `vit_vit-b16_mln_upernet` row) at 512x512: one forward of our Paddle
model (default path and dygraph) and our PyTorch twin against MMSeg's own PyTorch model, the same weights
(converted). On the CPU each model runs in its own process with every core, the processes taking turns rep by rep
(benchmarks/_turns.py); on cuda the two PyTorch models take turns in one process.

    python -m benchmarks.upernet [--repeats 3] [--size 512] [--mkl]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, List, Optional, Tuple

import numpy as np

from benchmarks import ROOT

ROW = "vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512"


def timed(fns: List[Callable[[], object]], repeats: int) -> Tuple[List[List[float]], List[object]]:
    """Seconds of `repeats` calls of each fn after one warm-up call each, the fns taking turns, so a load that
    comes and goes on the machine falls on both alike; and each fn's warm-up result."""
    first = [fn() for fn in fns]
    out: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, out):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return out, first


def build_mmseg(size: int):
    """MMSeg's model from the wheel's own config (SyncBN -> BN: the same at inference), random weights."""
    import torch
    from mmengine.config import Config

    sys.path.insert(0, ROOT)
    import mmseg

    from parity_tests import mmlab

    cfg = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", ROW + ".py")).model
    cfg.pop("data_preprocessor")
    cfg.pop("pretrained")
    cfg.backbone.img_size = (size, size)
    for head in ("decode_head", "auxiliary_head"):
        cfg[head].norm_cfg = dict(type="BN", requires_grad=True)
    torch.manual_seed(0)
    return mmlab.build_mmseg(cfg, seed=0)


def prepare(size: int, folder: str) -> Tuple[str, str]:
    """MMSeg's model with random weights, its state dict (torch.save) and ours converted (the model section as JSON,
    the canonical arrays as .npz) written into `folder`: what each contender's process loads."""
    import json

    import torch

    from segmenter.convert import model_config
    from segmenter.convert.core import to_canonical

    ref = build_mmseg(size)
    torch.save(ref.state_dict(), os.path.join(folder, "mmseg.pt"))
    conv = to_canonical({k: v.numpy() for k, v in ref.state_dict().items()}, "mmseg", ROW)
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(model_config(conv.arch, None), f)
    np.savez(os.path.join(folder, "state.npz"), **conv.state)
    return torch.__version__, __import__("mmseg").__version__


def _ours(folder: str, framework: str):
    import json

    from segmenter.parity import build_model, load_into_paddle, load_into_torch

    with open(os.path.join(folder, "model.json")) as f:
        cfg = json.load(f)
    state = dict(np.load(os.path.join(folder, "state.npz")))
    m = build_model(cfg, framework)
    (load_into_paddle if framework == "paddle" else load_into_torch)(m, state)
    m.eval()
    return m


def image(size: int, batch: int = 1) -> np.ndarray:
    return np.random.RandomState(0).randn(batch, 3, size, size).astype(np.float32)


def ours_worker(size: int, folder: str, path: str = "default", batch: int = 1):
    """Our Paddle UPerNetViT: `default` (the compiled path, compiled on the first call), `dygraph`, or `mkl` (the
    same export on the MKL predictor)."""
    from benchmarks.versus import paddle_runtime

    paddle_runtime()
    import paddle

    m = _ours(folder, "paddle")
    paddle.set_grad_enabled(False)
    x = image(size, batch)
    px = paddle.to_tensor(x)
    if path == "dygraph":
        return (lambda: m(px)[0]), {}
    if path == "mkl":
        from segmenter import deploy

        tmp = tempfile.mkdtemp(prefix="segmenter_upernet_")
        prefix = deploy.export(m, os.path.join(tmp, "model"), (size, size), batch_size=None)
        mkl = deploy.create_predictor(prefix, None, use_onednn=False)

        def run_mkl():
            out = mkl(x)[0]
            mkl.release()
            return out

        return run_mkl, {"predictor": "MKL"}
    from segmenter.engine.compiled import CompiledModel

    fast = CompiledModel(m, compile_after=1)
    fast(px)
    if not fast.predictors:
        raise RuntimeError(f"the default path did not compile: {fast.failed or 'out of the token range or memory'}")
    return (lambda: fast(px)[0]), {"predictor": ["oneDNN" if p.use_onednn else "MKL" for p in fast.predictors.values()]}


def twin_worker(size: int, folder: str, batch: int = 1):
    from benchmarks._turns import torch_only

    torch_only()
    import torch

    m = _ours(folder, "torch")
    torch.set_grad_enabled(False)
    x = torch.from_numpy(image(size, batch))
    return (lambda: m(x)[0]), {}


def mmseg_worker(size: int, folder: str, batch: int = 1):
    import torch

    sys.path.insert(0, ROOT)
    from parity_tests import mmlab

    ref = build_mmseg(size)
    ref.load_state_dict(torch.load(os.path.join(folder, "mmseg.pt")))
    x = torch.from_numpy(image(size, batch))
    return (lambda: mmlab.mmseg_logits(ref, x)), {}


def cpu_turns(args) -> int:
    """The CPU comparison: each model in its own process, taking turns (benchmarks/_turns.py)."""
    from benchmarks._turns import Contender, compare, run_turns

    with tempfile.TemporaryDirectory(prefix="segmenter_upernet_") as folder:
        versions = prepare(args.size, folder)
        kw = {"size": args.size, "folder": folder, "batch": args.batch}
        cs = [
            Contender("ours, Paddle default path (compiled UPerNetViT)", "benchmarks.upernet:ours_worker", kw),
            Contender("ours, Paddle dygraph (UPerNetViT)", "benchmarks.upernet:ours_worker", dict(kw, path="dygraph")),
            Contender("our PyTorch twin", "benchmarks.upernet:twin_worker", kw),
            Contender(
                f"MMSeg {versions[1]} `EncoderDecoder.inference`, PyTorch {versions[0]}",
                "benchmarks.upernet:mmseg_worker",
                kw,
            ),
        ]
        if args.mkl:
            cs.insert(
                1,
                Contender(
                    "ours, Paddle compiled, MKL predictor (UPerNetViT)",
                    "benchmarks.upernet:ours_worker",
                    dict(kw, path="mkl"),
                ),
            )
        for c in cs if args.threads else []:
            c.env["OMP_NUM_THREADS"] = str(args.threads)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; every model in its own process")
        res = run_turns(cs, args.repeats, args.pause, save_dir=folder)
        per = f"{args.threads} thread{'s' * (args.threads > 1)}" if args.threads else "every core"
        print(
            f"\nViT-B/16 UPerNet + MLN, {args.size}x{args.size}, batch {args.batch}, cpu ({os.cpu_count()} CPUs, {per} "
            f"per process); median of {args.repeats} after one warm-up, the processes taking turns; load average "
            f"{os.getloadavg()[0]:.1f} at the end"
        )
        print("| model | s / forward (median) | images / s | CPU s (median) | runs |\n|---|---|---|---|---|")
        for name, r in res.items():
            if not r.get("median"):
                print(f"| {name} | failed: {r.get('error')} | | | |")
                continue
            runs = ", ".join(f"{t:.4f}" for t in r["runs"])
            print(f"| {name} | {r['median']:.4f} | {args.batch / r['median']:.2f} | {r['cpu_median']:.3f} | {runs} |")
        ref = res[cs[-1].name]
        for c in cs[:-1]:
            r = res[c.name]
            if r.get("median") and ref.get("median"):
                d, _, agree = compare(r["output"], ref["output"])
                cpu = r["cpu_median"] / ref["cpu_median"]
                print(
                    f"{c.name}: ratio to MMSeg {r['median'] / ref['median']:.2f} (CPU {cpu:.2f}), "
                    f"logits max|diff| {d:.1e}, arg-max agreement {100 * agree:.2f}%"
                )
                r.update(vs_mmseg=r["median"] / ref["median"], cpu_vs_mmseg=cpu, max_abs_diff=d, argmax_agree=agree)
        if args.json:
            import json

            with open(args.json, "w") as f:
                json.dump({"threads": args.threads or "every core", "rows": res}, f, indent=1, default=str)
            print(f"wrote {args.json}")
    return 0


def numpy_of(out) -> np.ndarray:
    """A torch tensor (on any device) or a numpy array, as numpy."""
    return out.cpu().numpy() if hasattr(out, "cpu") else np.asarray(out)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="cpu, or cuda: the two PyTorch models only (fp32, TF32 off unless --tf32), with a GPU build of PyTorch",
    )
    p.add_argument("--tf32", action="store_true", help="on cuda: let both PyTorch models use TF32 matmuls")
    p.add_argument(
        "--mkl", action="store_true", help="on cpu: also time the compiled export on the MKL predictor (default: off)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="math threads of each model's process (OMP_NUM_THREADS; on cuda torch's CPU threads); default: every core",
    )
    p.add_argument("--pause", type=float, default=0.3, help="on cpu: seconds before each turn (default: 0.3)")
    p.add_argument("--json", default=None, help="on cpu: also write the figures here (default: none)")
    args = p.parse_args(argv)
    if args.device == "cpu":
        return cpu_turns(args)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from segmenter.convert import model_config
    from segmenter.convert.core import to_canonical
    from segmenter.parity import build_model, load_into_torch

    sys.path.insert(0, ROOT)
    from mmseg import __version__ as mmseg_version

    from parity_tests import mmlab

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    ref = build_mmseg(args.size)
    conv = to_canonical({k: v.numpy() for k, v in ref.state_dict().items()}, "mmseg", ROW)
    twin = build_model(model_config(conv.arch, None), "torch")
    load_into_torch(twin, conv.state)
    ref, twin = ref.to(args.device), twin.to(args.device)
    xt = torch.from_numpy(image(args.size, args.batch)).to(args.device)

    def synced(fn):
        def run():
            with torch.no_grad():
                out = fn()
            torch.cuda.synchronize()
            return out

        return run

    runs = {
        "our PyTorch twin": synced(lambda: twin(xt)[0]),
        f"MMSeg {mmseg_version} `EncoderDecoder.inference`, PyTorch {torch.__version__}": synced(
            lambda: mmlab.mmseg_logits(ref, xt)
        ),
    }
    all_times, firsts = timed(list(runs.values()), args.repeats)
    times = dict(zip(runs, all_times))
    outs = {name: numpy_of(out) for name, out in zip(runs, firsts)}
    mm_name = list(runs)[-1]
    print(
        f"ViT-B/16 UPerNet + MLN, {args.size}x{args.size}, batch {args.batch}, cuda ({torch.cuda.get_device_name()}"
        f"{', TF32' if args.tf32 else ', fp32'}); median of {args.repeats} after one warm-up, the models taking turns"
    )
    print("| model | s / forward (median) | images / s | runs |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.4f} | {args.batch / med:.2f} | {', '.join(f'{t:.4f}' for t in ts)} |")
    med_mm = statistics.median(times[mm_name])
    for name in list(runs)[:-1]:
        print(
            f"{name}: ratio to MMSeg {statistics.median(times[name]) / med_mm:.2f}, logits max|diff| "
            f"{np.abs(outs[name] - outs[mm_name]).max():.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

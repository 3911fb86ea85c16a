"""ViT-B/16 UPerNet (MultiLevelNeck, MMSeg's `vit_vit-b16_mln_upernet` row) at 512x512: one forward of our Paddle
model and our PyTorch twin against MMSeg's own PyTorch model, the same weights (converted), measured in one run.

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
        "--threads", type=int, default=None, help="math threads of both frameworks on the CPU (default: one per core)"
    )
    args = p.parse_args(argv)

    import torch

    import segmenter  # noqa: F401  (our runtime settings, as every user of the package gets them)

    if args.threads:
        from segmenter.runtime import configure_cpu

        configure_cpu(num_threads=args.threads)
        torch.set_num_threads(args.threads)
    from segmenter.convert import model_config
    from segmenter.convert.core import to_canonical
    from segmenter.parity import build_model, load_into_torch

    sys.path.insert(0, ROOT)
    from mmseg import __version__ as mmseg_version

    from parity_tests import mmlab

    cuda = args.device == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    ref = build_mmseg(args.size)
    conv = to_canonical({k: v.numpy() for k, v in ref.state_dict().items()}, "mmseg", ROW)
    model_cfg = model_config(conv.arch, None)
    twin = build_model(model_cfg, "torch")
    load_into_torch(twin, conv.state)
    ref, twin = ref.to(args.device), twin.to(args.device)

    x = np.random.RandomState(0).randn(args.batch, 3, args.size, args.size).astype(np.float32)
    xt = torch.from_numpy(x).to(args.device)

    def synced(fn):
        def run():
            with torch.no_grad():
                out = fn()
            if cuda:
                torch.cuda.synchronize()
            return out

        return run

    runs = {
        "our PyTorch twin": synced(lambda: twin(xt)[0]),
        f"MMSeg {mmseg_version} `EncoderDecoder.inference`, PyTorch {torch.__version__}": synced(
            lambda: mmlab.mmseg_logits(ref, xt)
        ),
    }
    if not cuda:  # Paddle runs on the CPU here (a paddlepaddle CPU build)
        import paddle

        from segmenter.parity import load_into_paddle

        ours = build_model(model_cfg, "paddle")
        load_into_paddle(ours, conv.state)
        xp = paddle.to_tensor(x)

        from segmenter.engine.compiled import CompiledModel

        ours.eval()
        fast = CompiledModel(ours, compile_after=1, num_threads=args.threads)

        def run_ours():
            with paddle.no_grad():
                return ours(xp)[0].numpy()

        def run_fast():
            with paddle.no_grad():
                return fast(xp)[0].numpy()

        runs = {
            "ours, Paddle default path (compiled UPerNetViT)": run_fast,
            "ours, Paddle dygraph (UPerNetViT)": run_ours,
            **runs,
        }
        if args.mkl:  # the same export on the MKL predictor (the compiled path's fallback), for oneDNN's share
            from segmenter import deploy

            tmp = tempfile.TemporaryDirectory(prefix="segmenter_upernet_")
            prefix = deploy.export(ours, os.path.join(tmp.name, "model"), (args.size, args.size), batch_size=None)
            mkl = deploy.create_predictor(prefix, args.threads, use_onednn=False)

            def run_mkl():
                out = mkl(x)[0]
                mkl.release()
                return out

            runs = {"ours, Paddle compiled, MKL predictor (UPerNetViT)": run_mkl, **runs}

    all_times, firsts = timed(list(runs.values()), args.repeats)
    if not cuda:
        print(
            f"default path: compiled {[list(k) for k in fast.predictors]}, oneDNN "
            f"{[p.use_onednn for p in fast.predictors.values()]}{', failed: ' + fast.failed if fast.failed else ''}"
        )
    times = dict(zip(runs, all_times))
    outs = {name: numpy_of(out) for name, out in zip(runs, firsts)}
    mm_name = list(runs)[-1]
    where = torch.cuda.get_device_name() if cuda else f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    print(
        f"ViT-B/16 UPerNet + MLN, {args.size}x{args.size}, batch {args.batch}, {args.device} ({where}"
        f"{', TF32' if cuda and args.tf32 else ', fp32' if cuda else ''}); median of {args.repeats} after one "
        f"warm-up, the models taking turns"
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

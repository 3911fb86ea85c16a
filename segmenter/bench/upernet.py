"""ViT-B/16 UPerNet (MultiLevelNeck, MMSeg's `vit_vit-b16_mln_upernet` row) at 512x512: one forward of our Paddle
model and our PyTorch twin against MMSeg's own PyTorch model, the same weights (converted), measured in one run.

    python -m segmenter.bench.upernet [--repeats 3] [--size 512]
"""
import argparse
import os
import statistics
import sys
import time
from typing import Callable, List, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROW = "vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512"


def timed(fns: List[Callable[[], object]], repeats: int) -> List[List[float]]:
    """Seconds of `repeats` calls of each fn after one warm-up call each, the fns taking turns, so a load that
    comes and goes on the machine falls on both alike."""
    for fn in fns:
        fn()
    out: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, out):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return out


def build_mmseg(size: int):
    """MMSeg's model from the wheel's own config (SyncBN -> BN: the same at inference), random weights."""
    import torch
    from mmengine.config import Config
    sys.path.insert(0, ROOT)
    from parity_tests import mmlab
    import mmseg
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", ROW + ".py")).model
    cfg.pop("data_preprocessor")
    cfg.pop("pretrained")
    cfg.backbone.img_size = (size, size)
    for head in ("decode_head", "auxiliary_head"):
        cfg[head].norm_cfg = dict(type="BN", requires_grad=True)
    torch.manual_seed(0)
    return mmlab.build_mmseg(cfg, seed=0)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=512)
    args = p.parse_args(argv)

    import paddle
    import torch
    import segmenter  # noqa: F401  (our runtime settings, as every user of the package gets them)
    from segmenter.convert import model_config
    from segmenter.convert.core import to_canonical
    from segmenter.parity import build_pair, load_into_paddle, load_into_torch
    sys.path.insert(0, ROOT)
    from parity_tests import mmlab

    ref = build_mmseg(args.size)
    conv = to_canonical({k: v.numpy() for k, v in ref.state_dict().items()}, "mmseg", ROW)
    ours, twin = build_pair(model_config(conv.arch, None))
    load_into_paddle(ours, conv.state)
    load_into_torch(twin, conv.state)

    x = np.random.RandomState(0).randn(1, 3, args.size, args.size).astype(np.float32)
    xp, xt = paddle.to_tensor(x), torch.from_numpy(x)

    def run_ours():
        with paddle.no_grad():
            return ours(xp)[0].numpy()

    def run_twin():
        with torch.no_grad():
            return twin(xt)[0].numpy()

    def run_mmseg():
        with torch.no_grad():
            return mmlab.mmseg_logits(ref, xt).numpy()

    t_ours, t_twin, t_mm = timed([run_ours, run_twin, run_mmseg], args.repeats)
    got, got_twin, want = run_ours(), run_twin(), run_mmseg()
    from mmseg import __version__ as mmseg_version
    print(f"ViT-B/16 UPerNet + MLN, {args.size}x{args.size}, batch 1, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPUs; median of {args.repeats} after one warm-up, the three taking turns")
    print("| model | s / forward (median) | images / s | runs |")
    print("|---|---|---|---|")
    for name, times in (("ours, Paddle dygraph (UPerNetViT)", t_ours), ("our PyTorch twin", t_twin),
                        (f"MMSeg {mmseg_version} `EncoderDecoder.inference`, PyTorch {torch.__version__}", t_mm)):
        med = statistics.median(times)
        print(f"| {name} | {med:.2f} | {1 / med:.3f} | {', '.join(f'{t:.2f}' for t in times)} |")
    med_mm = statistics.median(t_mm)
    print(f"ratio ours / MMSeg: {statistics.median(t_ours) / med_mm:.2f}; twin / MMSeg: "
          f"{statistics.median(t_twin) / med_mm:.2f}; logits max|diff| vs MMSeg: ours "
          f"{np.abs(got - want).max():.1e}, twin {np.abs(got_twin - want).max():.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

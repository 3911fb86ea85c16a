"""Seconds per 2048x1024 Cityscapes image for the shipped ViT-S Cityscapes config's evaluation (slice 768,
stride 512: 2 x 4 windows), with and without flip, so a full validation run (500 images) can be planned.

    python -m benchmarks.cityscapes [--decoder linear|mask] [--repeats 1] [--paths default dygraph]
        [--threads N] [--json out.json]

Random weights: the time does not depend on them. Measures what tools/val.py runs per image: the sliding-window
forward passes, the averaging, softmax and arg-max at full resolution, through the default path (the 768x768
window compiled once, engine/compiled.py) and the dygraph model, the paths taking turns. "x floor": the seconds
over the windows' matmul FLOPs at the best rate of a 2048^2 matmul (paddle or torch) measured in the same run.
"""

import argparse
import json
import os
import time

import numpy as np
import paddle

import segmenter  # noqa: F401  (registers the components)
from benchmarks import ROOT
from segmenter.engine.infer import predict_probs, window_starts
from segmenter.engine.run import load_config

CONFIGS = {
    "linear": "segmenter_vit_small_linear_cityscapes_768x768_80k.yml",
    "mask": "segmenter_vit_small_mask_cityscapes_768x768_80k.yml",
}
H, W = 1024, 2048


def seconds_per_image(model, x: paddle.Tensor, crop, stride, flip: bool, repeats: int) -> float:
    """Median wall seconds of predict_probs + arg-max on x over repeats runs."""
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        with paddle.no_grad():
            predict_probs(model, x, True, crop, stride, 1, flip).argmax(1).numpy()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decoder", choices=sorted(CONFIGS), default="linear", help="the config's head (default: linear)")
    p.add_argument("--repeats", type=int, default=1, help="timed images per path and flip setting (default: 1)")
    p.add_argument(
        "--paths", nargs="+", choices=("default", "dygraph"), default=["default", "dygraph"], help="default: both"
    )
    p.add_argument("--threads", type=int, default=None, help="paddle's math threads (default: one per core)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    from benchmarks.paths import model_flops
    from benchmarks.versus import interleaved, matmul_fns, matmul_gflops
    from segmenter.engine.builder import Builder
    from segmenter.engine.compiled import CompiledModel
    from segmenter.runtime import configure_cpu

    if args.threads:
        import torch

        configure_cpu(num_threads=args.threads)
        torch.set_num_threads(args.threads)

    cfg = load_config(
        os.path.join(ROOT, "configs", "segmenter", CONFIGS[args.decoder]),
        opts=["train_dataset.dataset_root=.", "val_dataset.dataset_root=."],
    )
    model = Builder(cfg).model
    model.eval()
    tc = cfg.test_config
    crop, stride = tuple(tc["crop_size"])[::-1], tuple(tc["stride"])[::-1]  # PaddleSeg's [w, h] -> (h, w)
    windows = len(window_starts(H, crop[0], stride[0])) * len(window_starts(W, crop[1], stride[1]))
    x = paddle.to_tensor(np.random.RandomState(0).randn(1, 3, H, W).astype("float32"))
    nets = {"default": CompiledModel(model, num_threads=args.threads), "dygraph": model}
    with paddle.no_grad():  # warm-up: the default path compiles the window size on its second sight
        for path in args.paths:
            for _ in range(2):
                nets[path](x[:, :, : crop[0], : crop[1]])
    bb = cfg.model_cfg["backbone"]
    flops = windows * model_flops(bb["embed_dim"], bb["depth"], args.decoder, crop[0], n_cls=model.num_classes)
    out = {
        "device": paddle.device.get_device(),
        "config": CONFIGS[args.decoder],
        "image": f"{W}x{H}",
        "crop": list(crop),
        "stride": list(stride),
        "windows": windows,
        "gflop": flops / 1e9,
        "compiled": [list(k) for k in nets["default"].predictors],
    }
    for flip in (False, True):
        fns = {p: (lambda n=nets[p], f=flip: seconds_per_image(n, x, crop, stride, f, 1)) for p in args.paths}
        times = interleaved({**fns, **matmul_fns()}, args.repeats)
        rate = matmul_gflops(times)
        floor = flops * (2 if flip else 1) / (rate * 1e9)
        for path in args.paths:
            s = float(np.median(times[path]))
            key = f"{path} {'flip' if flip else 'slice'}"
            out[key] = {"seconds": s, "x_floor": s / floor, "floor_s": floor, "matmul_gflops": rate}
            print(
                f"{CONFIGS[args.decoder]} ({path} path): {W}x{H}, slice {crop[0]}/{stride[0]} ({windows} windows)"
                f"{' + flip' if flip else ''}: {s:.2f} s/image, {s / floor:.2f}x the matmul floor ({floor:.2f} s "
                f"at {rate:.0f} GFLOP/s) -> {500 * s / 60:.1f} min for the 500 val images",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()

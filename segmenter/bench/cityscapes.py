"""Seconds per 2048x1024 Cityscapes image for the shipped ViT-S Cityscapes config's evaluation (slice 768,
stride 512: 2 x 4 windows), with and without flip, so a full validation run (500 images) can be planned.

    python -m segmenter.bench.cityscapes [--decoder linear|mask] [--repeats 1] [--json out.json]

Random weights: the time does not depend on them. Measures what tools/val.py runs per image: the sliding-window
forward passes, the averaging, softmax and arg-max at full resolution.
"""

import argparse
import json
import os
import time

import numpy as np
import paddle

import segmenter  # noqa: F401  (registers the components)
from segmenter.engine.infer import predict_probs, window_starts
from segmenter.engine.run import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    p.add_argument("--decoder", choices=sorted(CONFIGS), default="linear")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args(argv)
    from segmenter.engine.builder import Builder

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
    with paddle.no_grad():  # warm-up: one window
        model(x[:, :, : crop[0], : crop[1]])
    out = {
        "device": paddle.device.get_device(),
        "config": CONFIGS[args.decoder],
        "image": f"{W}x{H}",
        "crop": list(crop),
        "stride": list(stride),
        "windows": windows,
    }
    for flip in (False, True):
        s = seconds_per_image(model, x, crop, stride, flip, args.repeats)
        out["flip" if flip else "slice"] = s
        print(
            f"{CONFIGS[args.decoder]}: {W}x{H}, slice {crop[0]}/{stride[0]} ({windows} windows)"
            f"{' + flip' if flip else ''}: {s:.2f} s/image -> {500 * s / 60:.1f} min for the 500 val images",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()

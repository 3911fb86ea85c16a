"""Build a Segmenter from a config and time one forward pass on a random image."""
import argparse
import time

import paddle
from paddleseg.cvlibs import Config, SegBuilder

import segmenter  # noqa: F401  (registers the components)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="configs/segmenter/segmenter_vit_small_linear_ade20k_512x512_160k.yml")
    p.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--repeat", type=int, default=3)
    return p.parse_args()


def main(args: argparse.Namespace) -> None:
    model = SegBuilder(Config(args.config)).model
    model.eval()
    x = paddle.randn([1, 3, *args.size])
    times = []
    with paddle.no_grad():
        for _ in range(args.repeat + 1):  # the first run warms up
            t = time.perf_counter()
            logits = model(x)[0]
            times.append(time.perf_counter() - t)
    best = min(times[1:])
    print(f"{args.config}: input {list(x.shape)} -> logits {list(logits.shape)}; "
          f"forward {best:.3f} s (best of {args.repeat})")


if __name__ == "__main__":
    main(parse_args())

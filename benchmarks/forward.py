"""Build a Segmenter from a config and time one forward pass on a random image.

python tools/benchmark.py forward [--config X.yml] [--size W H] [--repeat 3]
"""

import time
from typing import List, Optional

from segmenter.engine import cli
from segmenter.engine.cli_errors import run_cli


def parse_args(argv=None):
    p = cli.Parser(__doc__, prog="tools/benchmark.py forward")
    cli.add_config(p, False, "configs/segmenter/segmenter_vit_small_linear_ade20k_512x512_160k.yml")
    cli.add_size(p, "--size", "input size", "512 512")
    p.add_argument("--repeat", type=int, default=3, help="timed forward passes, after one warm-up")
    cli.add_common(p)
    return p.parse_args(argv)


def timed_forward(args) -> None:
    import paddle

    import segmenter  # noqa: F401  (registers the components)
    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config

    cli.apply_device(args.device)
    cfg = load_config(args.config, args.opts, verbose=args.verbose)
    model = Builder(cfg).model
    model.eval()
    x = paddle.randn([1, 3, *cli.height_width(args.size or (512, 512), cfg.model_cfg)])  # --size W H
    times = []
    with paddle.no_grad():
        for _ in range(args.repeat + 1):  # the first run warms up
            t = time.perf_counter()
            logits = model(x)[0]
            times.append(time.perf_counter() - t)
    best = min(times[1:])
    print(
        f"{args.config}: input {list(x.shape)} -> logits {list(logits.shape)}; "
        f"forward {best:.3f} s (best of {args.repeat})"
    )


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(timed_forward, parse_args(argv))

"""Export a Segmenter config (+ optional weights) for one fixed input size: paddle.inference (default) or ONNX.

python tools/export.py --config configs/segmenter/X.yml --size 512 512 --save output/export/model [--weights W]
python tools/export.py --config configs/segmenter/X.yml --size 512 512 --format onnx --save output/model.onnx
--size is W H, PaddleSeg's order; PaddleSeg export's --input_shape N C H W is taken too.
"""

import sys

SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from segmenter.engine import cli  # noqa: E402
from segmenter.engine.cli_errors import run_cli  # noqa: E402


def parse_args(argv=None):
    p = cli.Parser(__doc__)
    cli.add_config(p)
    cli.add_weights(p, required=False)
    cli.add_size(p, "--size", "the fixed input size", "512 512")
    p.add_argument(
        "--input_shape",
        type=int,
        nargs=4,
        metavar=("N", "C", "H", "W"),
        help="PaddleSeg export's spelling of batch, channels and size, e.g. 1 3 512 1024 (N <= 0: variable batch), "
        "instead of --batch_size and --size",
    )
    p.add_argument("--batch_size", type=int, default=0, help="fixed batch; 0 = variable batch")
    p.add_argument(
        "--format",
        choices=["paddle", "onnx"],
        default="paddle",
        help="paddle: <save>.json (the program) and <save>.pdiparams (the weights) for paddle.inference; onnx: <save> "
        "(a .onnx file) via paddle2onnx; both with <save>.model_card.json (the model section)",
    )
    p.add_argument("--save", required=True, help="output prefix (paddle) or .onnx path (onnx)")
    cli.add_precision(p, "(default: fp32); recorded with a paddle export, whose predictor then runs at it")
    cli.add_common(p)
    return p.parse_args(argv)


def main(args) -> None:
    from segmenter.engine.run import load_config, run_export

    cfg = load_config(args.config, args.opts, verbose=args.verbose)  # the same checks as train/val
    cli.apply_device(args.device)
    size, batch = cli.export_input(args.size, args.input_shape, args.batch_size, cfg.model_cfg)  # (H, W)
    run_export(cfg, args.model_path, args.save, size, batch, args.format, args.precision or "fp32")


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

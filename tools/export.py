"""Export a Segmenter config (+ optional weights) for one fixed input size: paddle.inference (default) or ONNX.

python tools/export.py --config configs/segmenter/X.yml --size 512 512 --save output/export/model [--weights W]
python tools/export.py --config configs/segmenter/X.yml --size 512 512 --format onnx --save output/model.onnx
"""

import sys

import segmenter  # noqa: F401  (registers components, configures CPU threads)
from segmenter.deploy import ONNX_OPSET
from segmenter.engine import cli
from segmenter.engine.cli_errors import run_cli
from segmenter.engine.run import load_config, run_export


def parse_args(argv=None):
    p = cli.Parser(__doc__)
    cli.add_config(p)
    cli.add_weights(p, required=False)
    p.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"), help="the fixed input size")
    p.add_argument("--batch_size", type=int, default=0, help="fixed batch; 0 = variable batch")
    p.add_argument(
        "--format",
        choices=["paddle", "onnx"],
        default="paddle",
        help="paddle: <save>.json/.pdiparams for paddle.inference; onnx: <save> (a .onnx file) via "
        f"paddle2onnx, opset {ONNX_OPSET}",
    )
    p.add_argument("--save", required=True, help="output prefix (paddle) or .onnx path (onnx)")
    cli.add_precision(p, "(default: fp32); recorded with a paddle export, whose predictor then runs at it")
    cli.add_common(p)
    return p.parse_args(argv)


def main(args) -> None:
    cfg = load_config(args.config, args.opts, verbose=args.verbose)  # the same checks as train/val
    cli.apply_device(args.device)
    run_export(cfg, args.model_path, args.save, args.size, args.batch_size, args.format, args.precision or "fp32")


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

"""Evaluate a trained Segmenter: mIoU, Acc, Kappa, Dice, per-class IoU/precision; slice, flip, multi-scale.

python tools/val.py --config X.yml --model_path output/best_model [--aug_eval --flip_horizontal]
"""

import sys

SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from segmenter.engine import cli  # noqa: E402
from segmenter.engine.cli_errors import run_cli  # noqa: E402


def parse_args(argv=None):
    p = cli.Parser(__doc__)
    cli.add_config(p)
    cli.add_weights(p)
    cli.add_inference(p, "aug_eval")
    p.add_argument(
        "--save_panels",
        type=int,
        default=0,
        metavar="N",
        help="also write image | truth | prediction PNGs of the N worst and N best images by mIoU (default: 0, none)",
    )
    p.add_argument("--save_dir", default="output/panels", help="where --save_panels writes")
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write the metrics to PATH as JSON: each row's mIoU, Acc, Kappa, Dice and per-class IoU and "
        "precision by class name (default: none)",
    )
    cli.add_common(p)
    cli.add_paddleseg_eval(p, "aug_eval")
    cli.refuse(p, "--num_workers", "val reads its images in the evaluating process; drop the flag.")
    return p.parse_args(argv)


def main(args) -> None:
    from segmenter.engine.run import load_config, run_save_panels, run_val, write_metrics

    cfg = load_config(args.config, args.opts, verbose=args.verbose)
    cli.apply_device(args.device)
    kw = cli.inference_overrides(args, args.aug_eval)
    metrics = run_val(cfg, args.model_path, **kw)
    if args.json:
        print(f"[EVAL] metrics written to {write_metrics(args.json, cfg, metrics, kw)}")
    if args.save_panels:
        for path in run_save_panels(cfg, args.model_path, args.save_panels, args.save_dir, **kw):
            print(f"[PANEL] {path}")


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

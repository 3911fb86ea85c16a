"""Evaluate a trained Segmenter: mIoU, Acc, Kappa, Dice, per-class IoU/precision; slice, flip, multi-scale."""
import argparse
import sys

import segmenter  # noqa: F401  (registers the components)
from segmenter.engine.cli_errors import run_cli
from segmenter.engine.run import load_config, run_save_panels, run_val


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--model_path", required=True)
    p.add_argument("--is_slide", action="store_true", default=None)
    p.add_argument("--crop_size", type=int, nargs=2)
    p.add_argument("--stride", type=int, nargs=2)
    p.add_argument("--window_batch_size", type=int)
    p.add_argument("--aug_eval", action="store_true")
    p.add_argument("--flip_horizontal", action="store_true")
    p.add_argument("--scales", type=float, nargs="+")
    p.add_argument("--opts", nargs="+", default=None)
    p.add_argument("--save_panels", type=int, default=0, metavar="N",
                   help="also write image | truth | prediction PNGs of the N worst and N best images by mIoU")
    p.add_argument("--save_dir", default="output/panels", help="where --save_panels writes")
    return p.parse_args()


def main(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.opts)
    kw = dict(is_slide=args.is_slide, crop_size=args.crop_size, stride=args.stride,
              window_batch_size=args.window_batch_size, flip_horizontal=args.aug_eval and args.flip_horizontal or None,
              scales=tuple(args.scales) if args.aug_eval and args.scales else None)
    run_val(cfg, args.model_path, **kw)
    if args.save_panels:
        for path in run_save_panels(cfg, args.model_path, args.save_panels, args.save_dir, **kw):
            print(f"[PANEL] {path}")


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

"""Predict pseudo-colour masks and overlays (PNG) for an image file or a folder of images."""
import argparse
import sys

import segmenter  # noqa: F401  (registers the components)
from segmenter.engine.cli_errors import run_cli
from segmenter.engine.predict import run_predict
from segmenter.engine.run import load_config


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--model_path", required=True)
    p.add_argument("--image_path", required=True, help="an image file or a folder of images")
    p.add_argument("--save_dir", default="output/result")
    p.add_argument("--is_slide", action="store_true", default=None)
    p.add_argument("--crop_size", type=int, nargs=2)
    p.add_argument("--stride", type=int, nargs=2)
    p.add_argument("--aug_pred", action="store_true")
    p.add_argument("--flip_horizontal", action="store_true")
    p.add_argument("--opts", nargs="+", default=None)
    return p.parse_args()


def main(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.opts)
    run_predict(cfg, args.model_path, args.image_path, args.save_dir, is_slide=args.is_slide,
                crop_size=args.crop_size, stride=args.stride,
                flip_horizontal=args.aug_pred and args.flip_horizontal or None)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

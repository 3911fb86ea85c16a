"""Predict pseudo-colour masks and overlays (PNG) for an image file or a folder of images.

python tools/predict.py --config X.yml --model_path output/best_model --image_path photos/ [--save_dir out]
"""

import sys

SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from segmenter.engine import cli  # noqa: E402
from segmenter.engine.cli_errors import run_cli  # noqa: E402


def parse_args(argv=None):
    p = cli.Parser(__doc__)
    cli.add_config(p)
    cli.add_weights(p)
    p.add_argument(
        "--image_path",
        required=True,
        help="an image file, or a folder: its images and those of its sub-folders (except --save_dir)",
    )
    p.add_argument(
        "--no_recursive",
        dest="recursive",
        action="store_false",
        help="only the folder's own images, not its sub-folders (default: sub-folders are searched)",
    )
    p.add_argument(
        "--save_dir", default="output/result", help="where pseudo_color/ and added/ are written; never read as input"
    )
    p.add_argument(
        "--skip_existing",
        action="store_true",
        help="keep the inputs whose mask and overlay are already in --save_dir: a rerun of a stopped or failed "
        "run predicts only what is missing (default: off, every input is predicted)",
    )
    cli.add_inference(p, "aug_pred")
    cli.add_common(p)
    cli.add_paddleseg_eval(p, "aug_pred")
    cli.refuse(p, "--custom_color", "masks use the class palette of segmenter/visualize/palette.py.", "+")
    return p.parse_args(argv)


def main(args) -> None:
    from segmenter.engine.predict import run_predict
    from segmenter.engine.run import load_config

    cfg = load_config(args.config, args.opts, verbose=args.verbose)
    cli.apply_device(args.device)
    run_predict(
        cfg,
        args.model_path,
        args.image_path,
        args.save_dir,
        args.recursive,
        args.skip_existing,
        **cli.inference_overrides(args, args.aug_pred),
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

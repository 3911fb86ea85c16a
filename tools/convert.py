"""Convert Segmenter weights between formats: ours (.pdparams / .pth / .safetensors), the official checkpoint,
PaddleSeg's released models, timm ViT, Google .npz, MMSegmentation (Segmenter, ViT/DeiT UPerNet) and mmpretrain
ViT. The destination format follows DST's extension; `--to mmseg` writes MMSeg's layout (.pth)."""

import sys

SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from segmenter.convert import UnsafeFileError, convert  # noqa: E402
from segmenter.engine import cli, tool_args  # noqa: E402
from segmenter.engine.cli_errors import run_cli  # noqa: E402


def parse_args(argv=None):
    return tool_args.convert(__doc__, argv)


def main(args) -> int:
    names = (
        "num_heads",
        "decoder_heads",
        "img_size",
        "norm_eps",
        "pos_embed_interp",
        "out_indices",
        "neck_scales",
        "pool_scales",
        "layer_scale_init",
    )
    overrides = {k: getattr(args, k) for k in names}
    overrides["img_size"] = cli.height_width(args.img_size, flag="--img-size")  # W H on the command line
    try:
        conv = convert(
            args.src, args.dst, args.fmt, overrides, args.save_config, args.base_config, args.num_classes, args.to
        )
    except (ValueError, UnsafeFileError, OSError) as e:
        print(f"error: {e}\nNothing was written.", file=sys.stderr)
        return 1
    print(
        f"{args.src} ({conv.fmt}) -> {args.dst}: {conv.arch.describe()}; {len(conv.state)} tensors, "
        f"{len(conv.dropped)} dropped on purpose {conv.dropped if args.verbose else conv.dropped[:4]}"
        + (f"; config {args.save_config}" if args.save_config else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

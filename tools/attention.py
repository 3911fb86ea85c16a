"""Attention maps of a trained Segmenter on one image, drawn as a labelled grid PNG.

    python tools/attention.py --config X.yml --model_path output/best_model --image img.jpg --layer 11 \\
        --pixel 200 120 --save output/attention.png [--framework torch] [--whole]      # --pixel X Y
"""

import os
import sys

SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from segmenter.engine import cli, config_check, tool_args  # noqa: E402
from segmenter.engine.cli_errors import run_cli  # noqa: E402


def parse_args(argv=None):
    return tool_args.attention(__doc__, argv)


def main(a) -> str:
    import numpy as np

    from segmenter.inference import read_images
    from segmenter.visualize.attention import attention_maps, draw_attention_grid

    config_check.check_config_path(a.config)  # both frameworks: a folder or a missing file says which YAML to pass
    kw = {"is_slide": False if a.whole else None}
    if a.framework == "torch":
        from segmenter.pytorch.inference import Inferencer

        if a.opts or a.device:
            raise ValueError("--opts and --device apply to --framework paddle; edit the YAML for the torch twin.")
    else:
        from segmenter.inference import Inferencer

        cli.apply_device(a.device)
        kw.update(opts=a.opts, verbose=a.verbose)
    seg = Inferencer(a.config, a.model_path, **kw)
    print(
        f"attention: {a.config} with {a.model_path or 'random weights'} ({a.framework}"
        f"{', ' + cli.runs_on() if a.framework == 'paddle' else ''}), image {a.image}",
        flush=True,
    )
    image = read_images(a.image)[0][0]
    x, _ = seg.preprocess(image)  # the network input after the config's val transforms
    if x.shape[1:] != image.shape[:2]:  # draw the picture the model saw
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((x.shape[2], x.shape[1]), Image.BILINEAR))
    kw = seg.infer_kwargs
    slide = {"crop_size": kw["crop_size"], "stride": kw["stride"]} if kw["is_slide"] else {}
    pixel = cli.pixel_yx(a.pixel, x.shape[1:])  # --pixel X Y -> (y, x)
    maps = attention_maps(seg.model, x, a.layer, pixel, decoder_layer=a.decoder_layer, **slide)
    os.makedirs(os.path.dirname(os.path.abspath(a.save)), exist_ok=True)
    draw_attention_grid(image, maps, a.save, seg.names, a.max_classes)
    query = "class token" if maps.query is None else f"patch row {maps.query[0]} column {maps.query[1]}"
    y0, x0, h, w = maps.box
    print(f"attention: maps of layer {maps.layer} ({query}, window x={x0} y={y0} {w}x{h}) written to {a.save}")
    return a.save


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

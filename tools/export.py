"""Export a Segmenter config (+ optional weights) for one fixed input size, for paddle.inference.

    python tools/export.py --config configs/segmenter/X.yml --size 512 512 --save output/export/model [--weights m.pdparams]
"""
import argparse

import paddle
from paddleseg.cvlibs import Config, SegBuilder

import segmenter  # noqa: F401  (registers components, configures CPU threads)
from segmenter import deploy


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", default=None, help="whole-model .pdparams, loaded strictly")
    ap.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    ap.add_argument("--batch_size", type=int, default=0, help="fixed batch; 0 = variable batch")
    ap.add_argument("--save", required=True, help="output prefix")
    return ap.parse_args()


def main() -> None:
    a = parse_args()
    model = SegBuilder(Config(a.config)).model
    if a.weights:
        from segmenter.models.weights import load_state_dict_strict, read_state_dict
        load_state_dict_strict(model, read_state_dict(a.weights), a.weights)
    deploy.export(model, a.save, a.size, batch_size=a.batch_size or None)
    print(f"exported {a.config} at {a.size} to {a.save}.json/.pdiparams (paddle {paddle.__version__})")


if __name__ == "__main__":
    main()

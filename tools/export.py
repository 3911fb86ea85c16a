"""Export a Segmenter config (+ optional weights) for one fixed input size: paddle.inference (default) or ONNX.

    python tools/export.py --config configs/segmenter/X.yml --size 512 512 --save output/export/model \
        [--weights m.pdparams]
    python tools/export.py --config configs/segmenter/X.yml --size 512 512 --format onnx --save output/model.onnx
"""
import argparse

import paddle

import segmenter  # noqa: F401  (registers components, configures CPU threads)
from segmenter import deploy
from segmenter.convert.files import write_model_card
from segmenter.engine.builder import Builder
from segmenter.engine.run import load_config


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", default=None, help="whole-model .pdparams, loaded strictly")
    ap.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    ap.add_argument("--batch_size", type=int, default=0, help="fixed batch; 0 = variable batch")
    ap.add_argument("--format", choices=["paddle", "onnx"], default="paddle",
                    help="paddle: <save>.json/.pdiparams for paddle.inference; onnx: <save> (a .onnx file) via "
                         "paddle2onnx, opset %d" % deploy.ONNX_OPSET)
    ap.add_argument("--save", required=True, help="output prefix (paddle) or .onnx path (onnx)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    a = parse_args(argv)
    cfg = load_config(a.config)  # the same checks as train/val (unknown keys, YAML line numbers)
    model = Builder(cfg).model
    if a.weights:
        from segmenter.models.weights import load_state_dict_strict, read_state_dict
        load_state_dict_strict(model, read_state_dict(a.weights), a.weights)
    if a.format == "onnx":
        if not a.save.endswith(".onnx"):
            raise SystemExit(f"--save {a.save}: with --format onnx give the file to write, ending in .onnx.")
        deploy.export_onnx(model, a.save, a.size, batch_size=a.batch_size or None)
        write_model_card(a.save, {**cfg.model_cfg, "num_classes": model.num_classes})  # <save>.model.json
        print(f"exported {a.config} at {a.size} to {a.save} (ONNX opset {deploy.ONNX_OPSET}, "
              f"batch {'dynamic' if not a.batch_size else a.batch_size})")
        return
    deploy.export(model, a.save, a.size, batch_size=a.batch_size or None)
    write_model_card(a.save, {**cfg.model_cfg, "num_classes": model.num_classes})
    print(f"exported {a.config} at {a.size} to {a.save}.json/.pdiparams (paddle {paddle.__version__})")


if __name__ == "__main__":
    main()

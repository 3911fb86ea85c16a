"""Run the Paddle model and its PyTorch twin on the same input with the same weights; print max abs diff,
relative L2 error and argmax agreement. Exit status 0 = within tolerance, 1 = not.

  python tools/parity.py --config CFG --weights W [--image IMG | --size W H]
  python tools/parity.py --sweep        # the per-preset x decoder table (random weights, tiny depth)
"""

import sys

SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from segmenter import parity  # noqa: E402
from segmenter.engine import cli, config_check, tool_args  # noqa: E402
from segmenter.engine.cli_errors import run_cli  # noqa: E402


def parse_args(argv=None):
    return tool_args.parity(__doc__, argv)


def main(args) -> int:
    cli.apply_device(args.device)
    if args.sweep:
        rows = parity.sweep()
        print("| preset (depth 2) | decoder | max abs diff | rel L2 | argmax agreement |\n|---|---|---|---|---|")
        for r in rows:
            g = r["gap"]
            print(
                f"| {r['preset']} | {r['decoder']} | {g.max_abs:.2e} | {g.rel_l2:.2e} | {100 * g.argmax_agree:.2f} % |"
            )
        return 0 if all(r["gap"].ok(*args.tolerance) for r in rows) else 1
    if not args.config:
        raise ValueError("parity: pass --config (or --sweep).")
    config_check.check_config_path(args.config)
    import paddle
    from paddleseg.cvlibs import Config

    from segmenter.pytorch import load_config

    model_cfg = dict(load_config(args.config)["model"])
    if "num_classes" not in model_cfg:
        from segmenter.pytorch.config import build_model

        model_cfg["num_classes"] = build_model(args.config).num_classes
    model_cfg["pretrained"] = None
    model_cfg["backbone"] = {**model_cfg["backbone"], "pretrained": None}
    Config(args.config)  # fail here, in PaddleSeg's words, on a config PaddleSeg itself would refuse
    paddle.seed(args.seed)
    pmodel, tmodel = parity.build_pair(model_cfg)
    if args.model_path:  # each framework reads the file through its own loader
        from segmenter.models.weights import load_pretrained as load_paddle
        from segmenter.pytorch.weights import load_pretrained as load_torch

        load_paddle(pmodel, args.model_path)
        load_torch(tmodel, args.model_path)
    else:
        parity.load_into_torch(tmodel, parity.paddle_state(pmodel))
    x = parity.image_input(args.image, cli.height_width(args.size, model_cfg), args.seed)  # --size W H
    g = parity.compare(pmodel, tmodel, x)
    ok = g.ok(*args.tolerance, allow_ties=True)
    print(
        f"input {list(x.shape)}: {g} -> {'PASS' if ok else 'FAIL'} (max abs <= {args.tolerance[0]:g}, "
        f"rel L2 <= {args.tolerance[1]:g}, argmax equal except at ties closer than 2 x max|diff|)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

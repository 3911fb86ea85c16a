"""A local demo page: upload an image, see the segmentation and per-class area, click for attention maps.

    python tools/demo.py --config X.yml --weights output/best_model [--port 7860] [--framework torch]

Serves on 127.0.0.1 only unless --host says otherwise; prints the URL to open. Nothing is fetched from the
internet, by the server or the page. See docs/visualization.md "The demo page".
"""

import argparse
import sys

SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from segmenter.engine import config_check, tool_args  # noqa: E402
from segmenter.engine.cli_errors import run_cli  # noqa: E402


def parse_args(argv=None):
    return tool_args.demo(__doc__, argv)


def main(a: argparse.Namespace) -> None:
    from segmenter.demo import Demo, serve

    if a.host != "127.0.0.1":
        print(
            f"warning: --host {a.host} serves the demo to other machines too; it has no login, and anyone who "
            "reaches the port can run the model on their uploads.",
            file=sys.stderr,
            flush=True,
        )
    config_check.check_config_path(a.config)
    print(f"loading {a.config} ({a.framework}) with {a.weights} ...", flush=True)
    demo = Demo(
        a.config,
        None if a.weights.lower() == "none" else a.weights,
        a.framework,
        a.max_side,
        int(a.max_mb * 2**20),
        a.max_tokens,
        int(a.max_attn_gb * 2**30),
        a.precision or "fp32",
    )
    serve(demo, a.host, a.port)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

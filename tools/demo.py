"""A local demo page: upload an image, see the segmentation and per-class area, click for attention maps.

    python tools/demo.py --config X.yml --weights output/best_model [--port 7860] [--framework torch]

Serves on 127.0.0.1 only unless --host says otherwise; prints the URL to open. Nothing is fetched from the
internet, by the server or the page. See docs/visualization.md "The demo page".
"""
import argparse
import sys

from segmenter.engine.cli_errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="YAML config of the model")
    p.add_argument("--weights", required=True,
                   help="a .pdparams or a checkpoint folder (with --framework torch also official / timm files); "
                        "'none' keeps the random init")
    p.add_argument("--framework", choices=["paddle", "torch"], default="paddle",
                   help="run the Paddle model or its PyTorch twin (default: paddle)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860; 0 picks a free one)")
    p.add_argument("--max_side", type=int, default=4096, help="longest image side accepted, px (default: 4096)")
    p.add_argument("--max_mb", type=float, default=32, help="largest upload, MiB (default: 32)")
    p.add_argument("--max_tokens", type=int, default=8192,
                   help="patches in one forward (whole image or slice window) (default: 8192, 2048x1024 at patch 16)")
    p.add_argument("--max_attn_gb", type=float, default=2.0,
                   help="memory of the attention weights of one click, GiB (default: 2)")
    return p.parse_args(argv)


def main(a: argparse.Namespace) -> None:
    from segmenter.demo import Demo, serve
    if a.host != "127.0.0.1":
        print(f"warning: --host {a.host} serves the demo to other machines too; it has no login, and anyone who "
              "reaches the port can run the model on their uploads.", file=sys.stderr, flush=True)
    print(f"loading {a.config} ({a.framework}) with {a.weights} ...", flush=True)
    demo = Demo(a.config, None if a.weights.lower() == "none" else a.weights, a.framework, a.max_side,
                int(a.max_mb * 2**20), a.max_tokens, int(a.max_attn_gb * 2**30))
    serve(demo, a.host, a.port)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))

"""The options of tools/train.py, convert.py, attention.py, parity.py and demo.py: the front doors stay thin, and
sibling tools share the options of segmenter.engine.cli (config, weights, device, verbose, PaddleSeg's flags)."""

import argparse

from segmenter.convert import FORMATS
from segmenter.engine import cli
from segmenter.engine.cli import Parser
from segmenter.resample import POS_EMBED_INTERPOLATIONS


def train(doc: str, argv=None) -> argparse.Namespace:
    """tools/train.py's options."""
    p = Parser(doc)
    cli.add_config(p)
    p.add_argument("--iters", type=cli.at_least(1), help="training iterations (default: the config's iters)")
    p.add_argument("--batch_size", type=cli.at_least(1), help="images per iteration and rank (default: the config's)")
    p.add_argument("--learning_rate", type=float, help="base learning rate (default: the config's)")
    p.add_argument("--save_dir", default="output", help="checkpoints, config.yml, curves.png and VisualDL logs")
    p.add_argument(
        "--save_interval", type=cli.at_least(1), default=1000, help="iterations between checkpoints (and evals)"
    )
    p.add_argument("--keep_checkpoint_max", type=cli.at_least(1), default=2, help="iter_N folders kept")
    p.add_argument("--log_iters", type=cli.at_least(1), default=10, help="iterations between [TRAIN] lines")
    p.add_argument(
        "--do_eval", action="store_true", help="evaluate at every checkpoint and keep best_model (default: off)"
    )
    p.add_argument("--use_vdl", action="store_true", help="log to VisualDL in save_dir/vdl (default: off)")
    p.add_argument("--resume_model", help="continue from a checkpoint folder save_dir/iter_N (default: start anew)")
    p.add_argument(
        "--num_workers",
        type=cli.at_least(0),
        default=0,
        help="data-loading worker processes (0: read in the training process); never changes the batches",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the data order, augmentation and initialisation")
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16"],
        default="fp32",
        help="fp16: automatic mixed precision (O1) with loss scaling; needs a GPU",
    )
    p.add_argument(
        "--save_all_ranks",
        action="store_true",
        help="every rank writes its final weights to save_dir/rank_R.pdparams, to compare replicas (default: off)",
    )
    cli.add_common(p)
    cli.add_paddleseg_train(p)
    return p.parse_args(argv)


def convert(doc: str, argv=None) -> argparse.Namespace:
    """tools/convert.py's options."""
    p = Parser(doc)
    p.add_argument(
        "src", help="source weights file, an http(s) URL of one, or a checkpoint folder (save_dir/best_model, iter_N)"
    )
    p.add_argument("dst", help="destination: .pdparams (Paddle), .pth (PyTorch) or .safetensors")
    p.add_argument(
        "--from", dest="fmt", choices=FORMATS, default=None, help="source family; recognised from the keys when omitted"
    )
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classes of the model to build on backbone-only weights (checked against whole models)",
    )
    p.add_argument(
        "--save-config",
        default=None,
        metavar="CFG.yml",
        help="also write a complete PaddleSeg config that builds exactly this model",
    )
    p.add_argument(
        "--base-config",
        default=None,
        help="dataset config the written config inherits (default: configs/_base_/ade20k.yml)",
    )
    p.add_argument("--num-heads", type=int, default=None, help="encoder heads (default: embed_dim // 64)")
    p.add_argument("--decoder-heads", type=int, default=None, help="mask decoder heads (default: d_model // 64)")
    cli.add_size(p, "--img-size", "training size the pos_embed grid belongs to", "from the weights")
    p.add_argument("--norm-eps", type=float, default=None, help="LayerNorm eps (default: the family's)")
    p.add_argument(
        "--pos-embed-interp",
        choices=POS_EMBED_INTERPOLATIONS,
        default=None,
        help="pos_embed resampling (default: the family's)",
    )
    p.add_argument(
        "--to",
        choices=("mmseg",),
        default=None,
        help="write MMSegmentation's layout ({meta, state_dict}, a .pth MMSeg loads) instead of ours",
    )
    p.add_argument(
        "--out-indices",
        type=int,
        nargs="+",
        default=None,
        help="UPerNet: blocks whose maps feed the neck/head (default: evenly spaced, e.g. 2 5 8 11)",
    )
    p.add_argument(
        "--neck-scales", type=float, nargs="+", default=None, help="UPerNet: MultiLevelNeck scales (default: 4 2 1 0.5)"
    )
    p.add_argument(
        "--pool-scales", type=int, nargs="+", default=None, help="UPerNet: PPM pool sizes (default: 1 2 3 6)"
    )
    p.add_argument(
        "--layer-scale-init",
        type=float,
        default=None,
        help="weights with layer scale: the init value the written config records for training from "
        "scratch (timm's DeiT-III 1e-6; default 1e-5); loaded weights replace it",
    )
    p.add_argument("--verbose", action="store_true", help="list every key dropped on purpose (default: the first 4)")
    return p.parse_args(argv)


def attention(doc: str, argv=None) -> argparse.Namespace:
    """tools/attention.py's options."""
    p = Parser(doc)
    cli.add_config(p)
    cli.add_weights(p, required=False)
    p.add_argument("--image", required=True, help="the image file to look at")
    p.add_argument("--layer", type=int, default=-1, help="encoder block (negative: from the end)")
    p.add_argument(
        "--pixel",
        type=int,
        nargs=2,
        metavar=("X", "Y"),
        default=None,
        help="query patch by a pixel of the image the model sees: x across, then y down, PaddleSeg's order (as "
        "--crop_size W H) (default: the class token is the query)",
    )
    p.add_argument("--decoder_layer", type=int, default=-1, help="mask-transformer block for the class attention")
    p.add_argument("--max_classes", type=int, default=8, help="classes drawn: those covering the most pixels")
    p.add_argument(
        "--whole", action="store_true", help="the whole image even if test_config slides windows (default: off)"
    )
    p.add_argument("--framework", choices=["paddle", "torch"], default="paddle", help="which twin runs")
    p.add_argument("--save", default="output/attention.png", help="the PNG to write")
    cli.add_common(p)
    return p.parse_args(argv)


def parity(doc: str, argv=None) -> argparse.Namespace:
    """tools/parity.py's options."""
    from segmenter import parity

    p = Parser(doc)
    p.add_argument("--config", help="PaddleSeg config of the model (required unless --sweep)")
    cli.add_weights(p, required=False, absent="the config's, else random")
    p.add_argument("--image", help="an image file, normalised with mean = std = 0.5 (default: a random input)")
    cli.add_size(p, "--size", "random input of this size", "512 512")
    p.add_argument(
        "--tolerance",
        type=float,
        nargs=2,
        default=[parity.MAX_ABS_TOL, parity.REL_L2_TOL],
        metavar=("MAX_ABS", "REL_L2"),
        help="pass bounds (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (no --weights) and input")
    p.add_argument("--sweep", action="store_true", help="measure Ti/S/B x linear/mask on random weights (default: off)")
    cli.add_common(p)
    return p.parse_args(argv)


def demo(doc: str, argv=None) -> argparse.Namespace:
    """tools/demo.py's options."""
    p = Parser(doc)
    p.add_argument("--config", required=True, help="YAML config of the model")
    p.add_argument(
        "--weights",
        required=True,
        help="a .pdparams or a checkpoint folder (with --framework torch also official / timm files); "
        "'none' keeps the random init",
    )
    p.add_argument(
        "--framework",
        choices=["paddle", "torch"],
        default="paddle",
        help="run the Paddle model or its PyTorch twin (default: paddle)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860; 0 picks a free one)")
    p.add_argument("--max_side", type=int, default=4096, help="longest image side accepted, px (default: 4096)")
    p.add_argument("--max_mb", type=float, default=32, help="largest upload, MiB (default: 32)")
    p.add_argument(
        "--max_tokens",
        type=int,
        default=8192,
        help="patches in one forward (whole image or slice window) (default: 8192, 2048x1024 at patch 16)",
    )
    p.add_argument(
        "--max_attn_gb", type=float, default=2.0, help="memory of the attention weights of one click, GiB (default: 2)"
    )
    cli.add_precision(p, "(default: fp32); where the page's bf16 toggle starts")
    return p.parse_args(argv)

"""The tools' shared command line: one parser, the options sibling tools share, PaddleSeg's habitual flags, and
the few lines each tool prints before it runs (what runs on what).

Every tool takes weights the same way (`--model_path` or its alias `--weights`: a weights file, an http(s) URL of
one, or a checkpoint folder, read through `segmenter.convert.files.resolve_weights`), `--verbose` (PaddleSeg's
build log with the resolved config) and `--device`. A mistake on the command line is one `error:` line naming the
option, never argparse's bare "unrecognized arguments".
"""

import argparse
import difflib
import os
import sys
from typing import Optional, Sequence

DEVICES = ("cpu", "gpu", "xpu", "npu", "mlu")  # PaddleSeg's --device choices


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends '(default: X)' to an option whose help does not state
    its default; a default of None or False means "not given", which the help text itself explains."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not action.option_strings or unset or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: an unknown option names the closest known one."""

    def __init__(self, description: str, prog: Optional[str] = None):
        prog = prog or f"tools/{os.path.basename(sys.argv[0])}"
        super().__init__(description=description, prog=prog, formatter_class=HelpFormatter, allow_abbrev=False)

    def error(self, message: str):
        print(f"error: {message} (`python {self.prog} --help` lists the options)", file=sys.stderr, flush=True)
        sys.exit(2)

    def parse_args(self, args: Optional[Sequence[str]] = None, namespace=None) -> argparse.Namespace:
        argv = list(sys.argv[1:] if args is None else args)
        known = {o for a in self._actions for o in a.option_strings}
        for tok in argv:  # before argparse's own checks: `--confg x.yml` is a misspelling, not a missing --config
            if tok.startswith("--") and tok != "--" and tok.split("=", 1)[0] not in known:
                self.error(self.unknown(tok))
        ns, extra = self.parse_known_args(argv, namespace)
        if extra:
            self.error(self.unknown(extra[0]))
        return ns

    def unknown(self, arg: str) -> str:
        """What to say about an argument no option takes."""
        if not arg.startswith("-"):
            return f"unexpected argument {arg!r}"
        name = arg.split("=", 1)[0]
        known = [
            o
            for a in self._actions
            for o in a.option_strings
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
        ]
        close = difflib.get_close_matches(name, known, 1, 0.6)
        return f"unknown option {name}" + (f"; did you mean {close[0]}?" if close else "")


def refuse(parser: argparse.ArgumentParser, flag: str, instead: str, nargs="?") -> None:
    """Accept PaddleSeg's flag only to answer it with one line saying what to use instead."""

    class Refused(argparse.Action):
        def __call__(self, p, namespace, values, option_string=None):
            p.error(f"{option_string} is PaddleSeg's, not supported here: {instead}")

    parser.add_argument(
        flag,
        nargs=nargs,
        action=Refused,
        default=argparse.SUPPRESS,
        metavar="...",
        help=f"PaddleSeg's option, refused: {instead}",
    )


def choice(flag: str, allowed: Sequence[str], refused: dict, hint: str = ""):
    """An argparse type: one of allowed, or a refused value answered with its reason."""

    def parse(value: str) -> str:
        if value in refused:
            raise argparse.ArgumentTypeError(f"{value} is not supported here: {refused[value]}")
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(allowed)}{hint}")
        return value

    parse.__name__ = flag  # argparse names the type in its "invalid ... value" message
    return parse


def at_least(minimum: int):
    """An argparse type: a whole number >= minimum (PaddleSeg's flags took 0 or -3 and the run failed later, or
    `--iters 0` fell back to the config's value without a word)."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"takes a whole number of at least {minimum}, got {n}")
        return n

    parse.__name__ = "int"
    return parse


def add_config(p: argparse.ArgumentParser, required: bool = True, default: Optional[str] = None) -> None:
    """--config and --opts."""
    p.add_argument(
        "--config",
        required=required,
        default=default,
        help="the PaddleSeg-style YAML of the model and data" + ("" if required or default else " (default: none)"),
    )
    p.add_argument(
        "--opts",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="override config values, e.g. --opts batch_size=2 model.num_classes=5 (default: none)",
    )


def add_weights(p: argparse.ArgumentParser, required: bool = True, absent: str = "random initialisation") -> None:
    """--model_path, alias --weights: what every tool that takes weights accepts."""
    p.add_argument(
        "--model_path",
        "--weights",
        dest="model_path",
        required=required,
        metavar="WEIGHTS",
        help="a weights file (.pdparams, or any format tools/convert.py reads), an http(s) URL of one (downloaded "
        "once into $SEGMENTER_CACHE) or a checkpoint folder (save_dir/best_model, save_dir/iter_N)"
        + ("" if required else f" (default: {absent})"),
    )


def add_inference(p: argparse.ArgumentParser, aug: str) -> None:
    """val.py's and predict.py's inference options (PaddleSeg's names); unset ones keep the config's test_config."""
    p.add_argument(
        "--is_slide",
        action="store_true",
        default=None,
        help="sliding-window inference (default: the config's test_config.is_slide)",
    )
    p.add_argument(
        "--crop_size",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help="window width and height for --is_slide, PaddleSeg's order (default: test_config.crop_size)",
    )
    p.add_argument(
        "--stride",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help="window stride across and down for --is_slide, PaddleSeg's order (default: test_config.stride)",
    )
    p.add_argument("--window_batch_size", type=int, help="windows run together (default: 1)")
    p.add_argument(
        f"--{aug}",
        action="store_true",
        help="test-time augmentation: enables --flip_horizontal and --scales (default: off)",
    )
    p.add_argument(
        "--flip_horizontal",
        action="store_true",
        help=f"with --{aug}: also average the horizontally flipped image (default: off)",
    )
    p.add_argument("--scales", type=float, nargs="+", help=f"with --{aug}: image scales averaged (default: 1.0)")
    p.add_argument(
        "--no_fast_path",
        action="store_true",
        help="run the dygraph model at every size instead of compiling each repeated input size from 512x512 to "
        "1024x1024 once (default: compiled, unless test_config.fast_path is false or SEGMENTER_FAST_PATH=0)",
    )


def inference_overrides(args: argparse.Namespace, aug: bool) -> dict:
    """The test_kwargs overrides add_inference's options give (None: keep the config's). As in PaddleSeg,
    --flip_horizontal and --scales count only with --aug_eval (--aug_pred); given without it, a note says so."""
    unused = [f"--{n}" for n in ("flip_horizontal", "scales") if getattr(args, n)]
    if unused and not aug:
        flag = "--aug_eval" if hasattr(args, "aug_eval") else "--aug_pred"
        note = f"note: {' and '.join(unused)} take effect only with {flag} (as in PaddleSeg); add {flag}"
        print(note, file=sys.stderr)
    return dict(
        is_slide=args.is_slide,
        crop_size=args.crop_size,
        stride=args.stride,
        window_batch_size=args.window_batch_size,
        flip_horizontal=aug and args.flip_horizontal or None,
        scales=tuple(args.scales) if aug and args.scales else None,
        fast_path=False if args.no_fast_path else None,
        precision=getattr(args, "precision", None),
    )


def add_size(p: argparse.ArgumentParser, flag: str, what: str, default: Optional[str] = None) -> None:
    """An image size option: two integers, width then height, PaddleSeg's order (crop_size, stride, Resize's
    target_size are [w, h] there, as --crop_size is here); read it with height_width()."""
    p.add_argument(
        flag,
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help=f"{what}: width and height, PaddleSeg's order (as --crop_size)"
        + (f" (default: {default})" if default else ""),
    )


def height_width(size: Optional[Sequence[int]], model: Optional[dict] = None, flag: str = "--size"):
    """A W H option's value as (H, W), the order of tensors and of the functions below the tools (None stays None).
    Given the config's model section, a non-square size whose transpose is the backbone's training size gets a
    note (the size is used as given, never transposed)."""
    if size is None:
        return None
    w, h = int(size[0]), int(size[1])
    trained = ((model or {}).get("backbone") or {}).get("img_size")
    if isinstance(trained, (list, tuple)) and len(trained) == 2 and w != h and [h, w] == [trained[1], trained[0]]:
        print(
            f"note: {flag} {w} {h} is width {w}, height {h} (PaddleSeg's order); the model was trained {trained[1]} "
            f"wide and {trained[0]} high (backbone.img_size {list(trained)} is [height, width]): for that shape "
            f"pass {flag} {trained[1]} {trained[0]}.",
            file=sys.stderr,
            flush=True,
        )
    return h, w


def pixel_yx(pixel: Optional[Sequence[int]], shape_hw: Sequence[int], flag: str = "--pixel"):
    """--pixel X Y (across, then down, PaddleSeg's order) as (y, x); a pixel outside the H x W image the model sees
    is a ValueError naming the option."""
    if pixel is None:
        return None
    x, y = int(pixel[0]), int(pixel[1])
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(
            f"{flag} {x} {y} (x y) is outside the image the model sees, {w} wide and {h} high; "
            f"pick 0 <= X < {w}, 0 <= Y < {h}."
        )
    return y, x


def export_input(size, input_shape, batch_size: int, model: Optional[dict] = None) -> tuple:
    """tools/export.py's input: ((H, W), batch) from --size W H and --batch_size, or PaddleSeg export's
    --input_shape N C H W (N <= 0: a variable batch); both given must agree."""
    if input_shape is None:
        return height_width(size or (512, 512), model), batch_size
    n, c, h, w = (int(v) for v in input_shape)
    channels = ((model or {}).get("backbone") or {}).get("in_channels", 3)
    if c != channels:
        raise ValueError(
            f"--input_shape {n} {c} {h} {w}: C is {c} but the model takes {channels} channels; "
            f"pass --input_shape {n} {channels} {h} {w}."
        )
    if size is not None and (int(size[0]), int(size[1])) != (w, h):
        raise ValueError(
            f"--size {size[0]} {size[1]} (W H) and --input_shape {n} {c} {h} {w} (N C H W) disagree; give one of them."
        )
    if batch_size and batch_size != max(n, 0):
        raise ValueError(f"--batch_size {batch_size} and --input_shape N={n} disagree; give one of them.")
    return (h, w), max(n, 0)


def add_common(p: argparse.ArgumentParser) -> None:
    """--device and --verbose, which every tool takes."""
    p.add_argument(
        "--device",
        type=choice("device", DEVICES, {}),
        default=None,
        metavar="{" + ",".join(DEVICES) + "}",
        help="where Paddle runs, as in PaddleSeg (default: paddle's own: gpu on a CUDA build, else cpu)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also print PaddleSeg's build log with the resolved config (default: off)",
    )


def add_data_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data_format",
        default="NCHW",
        type=choice("data_format", ("NCHW",), {"NHWC": "the ViT runs NCHW only; drop the flag."}),
        help="tensor layout, as PaddleSeg's; NCHW only",
    )


def precision_type(value: str) -> str:
    """An argparse type: fp32, or bf16 where this CPU has bf16 arithmetic (runtime.check_precision says why not)."""
    from segmenter.runtime import check_precision

    try:
        return check_precision(value, "")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None


precision_type.__name__ = "precision"  # argparse names the type in its "invalid ... value" message


def add_precision(p: argparse.ArgumentParser, default: str) -> None:
    """--precision as PaddleSeg's deploy scripts spell it: fp32, or bf16 through oneDNN's bf16 predictor."""
    p.add_argument(
        "--precision",
        default=None,
        type=precision_type,
        metavar="{fp32,bf16}",
        help="fp32, or bf16: every input size through oneDNN's bf16 predictor, on a CPU with avx512_bf16 or AMX "
        f"(docs/deployment.md; fp16 has no CPU kernels) {default}",
    )


def add_paddleseg_eval(p: argparse.ArgumentParser, tool: str) -> None:
    """val.py's and predict.py's PaddleSeg flags: accepted where their meaning holds here, else answered in one
    line saying what to use."""
    add_precision(p, "(default: the config's test_config.precision, else fp32)")
    add_data_format(p)
    refuse(p, "--amp_level", "evaluation and prediction run in fp32 or bf16 (--precision) here; drop the flag.")
    refuse(p, "--flip_vertical", f"only horizontal flips are averaged; use --{tool} --flip_horizontal.", 0)


def add_paddleseg_train(p: argparse.ArgumentParser) -> None:
    """train.py's PaddleSeg flags: --amp_level, --data_format and --repeats where their meaning holds here."""
    p.add_argument(
        "--amp_level",
        default="O1",
        type=choice(
            "amp_level",
            ("O1",),
            {
                "O2": "--precision fp16 trains with O1 mixed precision (fp32 master weights); pure fp16 (O2) is not "
                "offered."
            },
        ),
        help="with --precision fp16: PaddleSeg's AMP level; O1 only",
    )
    add_data_format(p)
    p.add_argument(
        "--repeats",
        type=choice("repeats", ("1",), {}, "; train longer with --iters"),
        default="1",
        metavar="1",
        help="PaddleSeg's dataset repeats per epoch; 1 only (train longer with --iters)",
    )
    refuse(p, "--profiler_options", "profile with `python tools/benchmark.py profile` (Paddle vs PyTorch, per op).")


def apply_device(device: Optional[str]) -> str:
    """Set Paddle's device; one a this build of Paddle lacks is a ValueError naming it. Returns the device."""
    import paddle

    if device is None:
        return paddle.device.get_device()
    built = {
        "cpu": True,
        "gpu": paddle.device.is_compiled_with_cuda(),
        "xpu": paddle.device.is_compiled_with_xpu(),
        "npu": paddle.device.is_compiled_with_custom_device("npu"),
        "mlu": paddle.device.is_compiled_with_custom_device("mlu"),
    }
    if not built[device]:
        has = [d for d in DEVICES if built[d]]
        raise ValueError(
            f"--device {device}: this paddlepaddle {paddle.__version__} has no {device.upper()} "
            f"support (it runs on {', '.join(has)}); use --device {has[-1]}, or install Paddle's "
            f"{device} build."
        )
    paddle.set_device(device)
    return paddle.device.get_device()


def resume_folder(path: Optional[str]) -> Optional[str]:
    """--resume_model as given; a training's save_dir (no model.pdparams in it, iter_N folders below) is a
    FileNotFoundError naming its newest checkpoint, as --model_path names save_dir/best_model."""
    if not path or not os.path.isdir(path) or os.path.isfile(os.path.join(path, "model.pdparams")):
        return path  # a checkpoint folder, or something load_checkpoint refuses in its own words
    found = sorted(
        (int(n[len("iter_") :]), os.path.join(path, n))
        for n in os.listdir(path)
        if n.startswith("iter_") and n[len("iter_") :].isdigit() and os.path.isdir(os.path.join(path, n))
    )
    if found:
        raise FileNotFoundError(
            f"--resume_model {path} is a training's save_dir, not a checkpoint; resume from its newest checkpoint: "
            f"--resume_model {found[-1][1]}"
        )
    return path


def runs_on() -> str:
    """'cpu, 2 threads' / 'gpu:0'."""
    import paddle

    from segmenter.runtime import cpu_settings

    device = paddle.device.get_device()
    threads = cpu_settings().get("num_threads")
    return f"{device}, {threads} thread{'s' * (threads != 1)}" if device == "cpu" and threads else device


def describe(cfg) -> str:
    """One line naming a config's model: type, backbone width/depth/patch, head, classes."""
    m = cfg.model_cfg or {}
    bb = m.get("backbone") or {}
    head = (m.get("decoder") or {}).get("name") or (m.get("decode_head") or {}).get("type")
    parts = [
        f"{m.get('type')}",
        f"{bb.get('type', '')} D={bb.get('embed_dim')} depth={bb.get('depth')} patch={bb.get('patch_size')}"
        if bb
        else "",
        f"{head} head" if head else "",
        f"{m.get('num_classes')} classes" if m.get("num_classes") else "",
    ]
    return ", ".join(p for p in parts if p)


def say(tool: str, cfg, **facts) -> None:
    """The header every tool prints: the config and its model, then one line per fact (weights, data sets,
    options), then the device."""
    lines = [f"{getattr(cfg, 'path', '')} ({describe(cfg)})"]
    lines += [f"{k.replace('_', ' ')}: {v}" for k, v in facts.items()]
    print("".join(f"{tool}: {line}\n" for line in lines + [f"running on {runs_on()}"]), end="", flush=True)

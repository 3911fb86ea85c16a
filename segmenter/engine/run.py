"""Config -> builder -> engine: what tools/train.py, val.py and predict.py call."""

import copy
import os
import random

import numpy as np
import paddle
import paddle.distributed as dist
import yaml
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs.config import parse_from_yaml
from paddleseg.utils.utils import NoAliasDumper

from segmenter.convert import ConversionError, detect_format, load_weights, paddleseg_config
from segmenter.convert.files import PADDLE_EXTS, extension, resolve_weights
from segmenter.convert.matching import WeightsMismatchError
from segmenter.engine.builder import Builder, checker_for
from segmenter.engine.checkpoint import run_sections
from segmenter.engine.cli import say
from segmenter.engine.cli_errors import user_error_inside
from segmenter.engine.config_check import (
    ConfigError,
    check_config_path,
    check_keys,
    check_num_classes,
    check_opts,
    check_yaml,
    checker_error,
    take_class_names,
)
from segmenter.engine.evaluate import evaluate
from segmenter.engine.losses import total_loss
from segmenter.engine.safe_load import model_section_of, read_weights
from segmenter.engine.train import train
from segmenter.engine.val_panels import save_extreme_panels
from segmenter.models.weights import load_state_dict_strict, read_state_dict
from segmenter.runtime import check_precision
from segmenter.visualize.palette import class_names


def load_config(
    path: str,
    opts: list = None,
    iters: int = None,
    batch_size: int = None,
    learning_rate: float = None,
    verbose: bool = False,
) -> Config:
    """PaddleSeg Config with --opts key=value overrides. A user's mistake is a ConfigError (one line, naming the
    file, key and value) before PaddleSeg meets it: a missing file or a folder, YAML syntax, unknown keys and
    types (a key inherited from a `_base_` names that file), an --opts value of the wrong type, PaddleSeg's own
    checks. With verbose, the Builder logs each component's resolved config as PaddleSeg does."""
    check_config_path(path)  # a missing file, a folder: which YAML to pass instead
    check_yaml(path)
    path, opts = paddleseg_config.translated(path, opts, parse_from_yaml)  # PaddleSeg's Segmenter configs, as ours
    dic = parse_from_yaml(path)
    check_keys(path, dic)  # before PaddleSeg's own checks, whose messages suggest nothing
    opts = check_opts(path, dic, opts)  # PaddleSeg asserts on these, or fails deep in a builder, with a traceback
    try:
        cfg = Config(
            path,
            learning_rate=learning_rate,
            batch_size=batch_size,
            iters=iters,
            opts=opts,
            checker=checker_for(dic),
        )  # evaluation-only configs too
    except AssertionError as e:  # PaddleSeg's Config refuses an --opts key that is not in the config this way
        if not opts:
            raise
        raise ConfigError(f"--opts {' '.join(opts)}: {e} Keys are full paths, e.g. model.backbone.depth=1.") from None
    except RuntimeError as e:  # PaddleSeg's checker: a rule failed (train and val sets of two types, ...)
        error = None if user_error_inside(e) else checker_error(path, dic, e)
        if error is None:
            raise  # our own rule's error (run_cli reports it) or a bug
        raise error from None
    check_keys(path, cfg.dic)
    check_num_classes(path, cfg.dic)  # PaddleSeg's builder asserts on this pair, with a traceback
    cfg.path = path
    cfg.class_names = take_class_names(path, cfg.dic)  # before any dataset is built: PaddleSeg's know no such key
    cfg.verbose = verbose
    return cfg


def resolved_dic(cfg: Config) -> dict:
    """The resolved config as a user writes it: load_config took class_names out of the dataset sections (PaddleSeg's
    classes know no such key), so they go back in for save_dir/config.yml."""
    dic = copy.deepcopy(cfg.dic)
    for name in ("train_dataset", "val_dataset"):
        if getattr(cfg, "class_names", None) and isinstance(dic.get(name), dict):
            dic[name]["class_names"] = list(cfg.class_names)
    return dic


def class_names_of(cfg: Config, num_classes: int) -> list:
    """The config's class names: its dataset section's class_names(_file), the dataset type's standard names, or
    'class i'."""
    data = cfg.val_dataset_cfg or cfg.train_dataset_cfg or {}
    return class_names(num_classes, data.get("type"), getattr(cfg, "class_names", None))


def test_kwargs(cfg: Config, overrides: dict) -> dict:
    """Evaluation options: test_config from the YAML, then any non-None command-line override. `fast_path`
    (test_config.fast_path; default None: on, unless SEGMENTER_FAST_PATH=0) selects the compiled inference path
    (engine/compiled.py); false keeps the dygraph model. `precision` (test_config.precision; default fp32): bf16
    runs the compiled path's predictors in bf16, on a CPU with bf16 arithmetic (checked here, one line if not)."""
    tc = dict(cfg.test_config or {})
    kw = {
        "is_slide": tc.get("is_slide", False),
        "crop_size": tc.get("crop_size"),
        "stride": tc.get("stride"),
        "window_batch_size": 1,
        "flip_horizontal": False,
        "scales": (1.0,),
        "fast_path": tc.get("fast_path"),
        "precision": tc.get("precision", "fp32"),
    }
    unknown = sorted(set(overrides) - set(kw))
    if unknown:
        raise TypeError(f"unknown inference option(s) {unknown}; the options are {sorted(kw)}.")
    kw.update({k: v for k, v in overrides.items() if v is not None})
    where = "precision" if overrides.get("precision") is not None else "test_config.precision"
    check_precision(kw["precision"], where if where == "precision" else f"config {getattr(cfg, 'path', '')}: {where}")
    if kw["is_slide"] and (not kw["crop_size"] or not kw["stride"]):
        raise ValueError(
            f"slide inference needs crop_size and stride (got {kw['crop_size']}, {kw['stride']}); "
            "set --crop_size/--stride or test_config in the YAML."
        )
    return kw


def run_train(cfg: Config, save_dir: str, seed: int = 0, **kw) -> dict:
    """Build everything from cfg and train; returns the last evaluation metrics."""
    if dist.get_world_size() > 1:
        dist.init_parallel_env()
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)
    b = Builder(cfg)
    train_ds = built(cfg, b, "train_dataset")
    model = b.model
    val_ds = built(cfg, b, "val_dataset") if kw.get("do_eval") else None
    losses = b.loss

    def loss_fn(logits, label):
        return total_loss(losses, logits, label)

    kw.setdefault("eval_kwargs", test_kwargs(cfg, {}))  # evaluate during training as tools/val.py does
    if dist.get_rank() == 0:
        bb = (cfg.model_cfg.get("backbone") or {}).get("pretrained")
        resume = kw.get("resume_model")
        say(
            "train",
            cfg,
            weights=f"resumed from {resume}" if resume else (f"backbone from {bb}" if bb else "random initialisation"),
            train_set=f"{len(train_ds)} images ({cfg.train_dataset_cfg.get('type')})",
            val_set=f"{len(val_ds)} images, evaluated every {kw.get('save_interval')} iters"
            if val_ds is not None
            else "none (pass --do_eval to evaluate)",
            schedule=f"{cfg.iters} iters of batch {cfg.batch_size}"
            f"{f' x {dist.get_world_size()} ranks' if dist.get_world_size() > 1 else ''}",
            save_dir=save_dir,
        )
    # the resolved config, written to save_dir/config.yml (printed only with --verbose)
    kw.setdefault("config_text", yaml.dump(resolved_dic(cfg), Dumper=NoAliasDumper, sort_keys=False))
    kw.setdefault("to_static", bool(cfg.dic.get("to_static_training", False)))
    kw.setdefault("run", run_sections(cfg.dic, save_interval=kw.get("save_interval"), log_iters=kw.get("log_iters")))
    kw.setdefault("class_names", class_names_of(cfg, model.num_classes))
    return train(
        model,
        train_ds,
        b.optimizer,
        b.lr_scheduler,
        loss_fn,
        cfg.iters,
        cfg.batch_size,
        save_dir,
        val_dataset=val_ds,
        num_classes=model.num_classes,
        seed=seed,
        **kw,
    )


def built(cfg: Config, builder: SegBuilder, name: str):
    """builder.<name> (a dataset); PaddleSeg's bare assertions (an empty list) become errors naming the files."""
    try:
        return getattr(builder, name)
    except AssertionError as e:
        section = cfg.dic.get(name) or {}
        files = {k: v for k, v in section.items() if k in ("dataset_root", "train_path", "val_path", "file_list")}
        raise ValueError(
            f"config {getattr(cfg, 'path', '')}: {name} {files}: {e} Add samples to the list or fix the paths."
        ) from None


def load_model(cfg: Config, model_path: str):
    """Model from cfg with weights from model_path (a weights file of any family tools/convert.py reads, an http(s)
    URL of one, or a checkpoint folder), read without running code and loaded strictly; a mismatch is 3 lines: the
    keys that differ, where the architecture of the weights and the config's differ, and what to pass instead. The
    config's `pretrained` files are not read: these weights replace them (a backbone's ImageNet URL would be
    downloaded for nothing)."""
    model_path = resolve_weights(model_path, "--model_path")
    model = Builder(without_pretrained(cfg)).model
    state = read_any_weights(model_path)
    try:
        load_state_dict_strict(model, state, model_path)
    except WeightsMismatchError as e:
        keys = str(e).split("\n", 1)[0]  # the loader's own advice gives way to the specific one below
        raise WeightsMismatchError(f"{keys}\n{fitting_config_hint(model_path, state, cfg)}") from None
    model.eval()
    return model


def without_pretrained(cfg: Config) -> Config:
    """A shallow copy of cfg whose model and backbone sections load no `pretrained` file."""
    out = copy.copy(cfg)
    out.dic = copy.deepcopy(cfg.dic)
    model = out.dic.get("model") or {}
    for section in (model, model.get("backbone")):
        if isinstance(section, dict) and section.get("pretrained") is not None:
            section["pretrained"] = None
    return out


def read_any_weights(path: str) -> dict:
    """Our .pdparams as stored (a truncated file is a CheckpointError naming it); any other family tools/convert.py
    reads (PaddleSeg's released model.pdparams, the official checkpoint, MMSeg, ...) converted to our layout, with
    one line saying so."""
    state = read_weights(path) if extension(path) in PADDLE_EXTS else None
    if state is not None:
        try:
            if detect_format(path, list(state)) == "paddle":
                return state
        except ConversionError:
            return state  # no family claims it: the strict load names the keys
    conv = load_weights(path)
    print(f"weights: {path} is {conv.fmt}'s layout, converted on load as tools/convert.py does", flush=True)
    return conv.state


ARCH_KEYS = ("embed_dim", "depth", "num_heads", "patch_size", "stem_layers", "img_size", "norm_eps")


def _arch_values(model: dict) -> dict:
    """{'num_classes': 4, 'backbone.embed_dim': 32, 'decoder.name': 'linear', ...} of a `model` section."""
    bb, dec = model.get("backbone") or {}, model.get("decoder") or {}
    out = {"num_classes": model.get("num_classes")}
    out.update({f"backbone.{k}": bb[k] for k in ARCH_KEYS if k in bb})
    out.update({f"decoder.{k}": v for k, v in dec.items() if k not in ("dropout", "drop_path_rate")})
    return out


def fitting_config_hint(model_path: str, state: dict, cfg: Config) -> str:
    """Two lines: the architecture values where the weights (their recorded model section, else read from their
    shapes) and the config differ, then which config to pass or how to write one."""
    where = getattr(cfg, "path", "in use")
    config = _arch_values(cfg.dic.get("model") or {})
    recorded = model_section_of(model_path)
    if recorded:
        held, source = _arch_values(recorded), "its state.json"
        run_cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(model_path))), "config.yml")
        fix = f"pass --config {run_cfg}, the config its training wrote" if os.path.isfile(run_cfg) else ""
    else:
        try:
            from segmenter.convert.arch import infer_arch

            arch = infer_arch(state, model_path, norm_eps=1e-6, pos_embed_interp="bilinear")
        except (ValueError, KeyError):
            return "  it is not a whole Segmenter in our layout; convert it with tools/convert.py (see --from)."
        held = {"num_classes": arch.num_classes, "decoder.name": (arch.decoder or {}).get("name", arch.decoder)}
        held.update({f"backbone.{k}": getattr(arch, k) for k in ("embed_dim", "depth", "patch_size")})
        source = "read from its shapes"
        fix = ""
    differ = [k for k in held if k in config and held[k] != config[k]] or [k for k in held if k in config]
    weights = ", ".join(f"{k}={held[k]}" for k in differ)
    ours = ", ".join(f"{k}={config[k]}" for k in differ)
    fix = fix or f"write a config for it: python tools/convert.py {model_path} out.pdparams --save-config cfg.yml"
    return f"  the weights have {weights} ({source}); the config {where} has {ours}.\n  To use them, {fix}."


def inference_mode(kw: dict) -> str:
    """'slice', 'whole + flip', 'slice + flip + scales [0.75, 1.0]': the inference test_kwargs describe."""
    base = "slice" if kw["is_slide"] else "whole"
    return (
        base
        + (" + flip" if kw["flip_horizontal"] else "")
        + (f" + scales {list(kw['scales'])}" if tuple(kw["scales"]) != (1.0,) else "")
    )


def precision_note(precision: str) -> str:
    """', in bf16 (...)' for the header line of val and predict; '' in fp32."""
    return "" if precision == "fp32" else f", in {precision} (oneDNN's {precision} predictor, one per input size)"


def run_val(cfg: Config, model_path: str, **overrides) -> dict:
    """Evaluate a trained model on cfg's val_dataset and print the report; under paddle.distributed.launch each
    rank evaluates its share and the counts are summed (evaluate)."""
    if dist.get_world_size() > 1:
        dist.init_parallel_env()
    model = load_model(cfg, model_path)
    ds = Builder(cfg).val_dataset
    kw = test_kwargs(cfg, overrides)
    mode = inference_mode(kw)
    window = f", windows {kw['crop_size']} stride {kw['stride']}" if kw["is_slide"] else ""
    say(
        "val",
        cfg,
        weights=resolve_weights(model_path),
        val_set=f"{len(ds)} images ({cfg.val_dataset_cfg.get('type')})",
        inference=mode + window + precision_note(kw["precision"]),
    )
    m = evaluate(model, ds, model.num_classes, **kw)
    for name, r in metrics_rows(m, kw):  # the published tables' columns: "slice", then "flip"
        print(
            f"[EVAL] {name}: {len(ds)} images  mIoU {r['mIoU']:.4f}  Acc {r['Acc']:.4f}  Kappa {r['Kappa']:.4f}  "
            f"Dice {r['Dice']:.4f}"
        )
    print(class_table(class_names_of(cfg, model.num_classes), m, mode))
    return m


def metrics_rows(m: dict, kw: dict) -> list:
    """(row name, metrics) in the order run_val prints them: "slice"/"whole", then the augmented row if any."""
    base, mode = "slice" if kw["is_slide"] else "whole", inference_mode(kw)
    return ([(base, m["plain"])] if "plain" in m else []) + [(mode, m)]


def write_metrics(path: str, cfg: Config, m: dict, overrides: dict) -> str:
    """The metrics of run_val as JSON at path (written whole or not at all): per row, mIoU, Acc, Kappa, Dice and each
    class's IoU and precision under its name, unrounded (rounded to 6 digits, 0.8161495 printed as 0.8162 at 4 where
    val.py had said 0.8161). Returns path."""
    import json

    kw = test_kwargs(cfg, overrides)
    names = class_names_of(cfg, len(m["class_iou"]))
    out = {
        "config": getattr(cfg, "path", None),
        "rows": {
            name: {
                **{k: float(r[k]) for k in ("mIoU", "Acc", "Kappa", "Dice")},
                "class_iou": {n: float(v) for n, v in zip(names, r["class_iou"])},
                "class_precision": {n: float(v) for n, v in zip(names, r["class_precision"])},
            }
            for name, r in metrics_rows(m, kw)
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".partial", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".partial", path)
    return path


def class_table(names: list, m: dict, mode: str) -> str:
    """Per-class IoU and precision, one class a row, named."""
    w = max(len("class"), *(len(n) for n in names))
    rows = [f"[EVAL] per class ({mode}):", f"  {'#':>3}  {'class':<{w}}  {'IoU':>6}  {'precision':>9}"]
    rows += [
        f"  {c:>3}  {n:<{w}}  {iou:6.4f}  {p:9.4f}"
        for c, (n, iou, p) in enumerate(zip(names, m["class_iou"], m["class_precision"]))
    ]
    return "\n".join(rows)


def run_export(
    cfg: Config, weights: str, save: str, size, batch_size: int = 0, fmt: str = "paddle", precision: str = "fp32"
) -> str:
    """tools/export.py: the model of cfg with weights (a file or a checkpoint folder; None: random init) traced at
    size [H, W] for paddle.inference (<save>.json/.pdiparams) or ONNX (<save>, a .onnx file), with its model card
    (<save>.model_card.json); one line per file written. precision "bf16" (paddle only): recorded for the predictor
    (<save>.deploy.json), which is checked against fp32 on this CPU."""
    from segmenter import deploy

    if fmt == "onnx" and not save.endswith(".onnx"):
        raise ValueError(f"--save {save}: with --format onnx give the file to write, ending in .onnx.")
    if fmt == "onnx" and precision != "fp32":
        raise ValueError(
            f"--precision {precision} is the paddle predictor's (oneDNN's {precision} passes); an ONNX file runs at "
            "the precision its runtime chooses: drop --precision, or use --format paddle."
        )
    model = Builder(cfg).model
    if weights:
        weights = resolve_weights(weights, "--weights")
        load_state_dict_strict(model, read_state_dict(weights), weights)  # any format convert reads
    say(
        "export",
        cfg,
        weights=weights or "random initialisation",
        input=f"width {size[1]}, height {size[0]}, batch {batch_size or 'variable'}",
        format=f"ONNX opset {deploy.ONNX_OPSET}" if fmt == "onnx" else f"paddle.inference, {precision}",
    )
    if fmt == "onnx":
        deploy.export_onnx(model, save, size, batch_size=batch_size or None)
        written = [(save, f"the model, ONNX opset {deploy.ONNX_OPSET}")]
    else:
        deploy.export(model, save, size, batch_size=batch_size or None, precision=precision)
        what = {
            ".json": f"the program, paddle {paddle.__version__}",
            ".pdmodel": "the program",
            ".pdiparams": "the weights",
            deploy.DEPLOY_INFO: f"the precision ({precision}) and input it was exported for",
        }
        written = [
            (f, what[deploy.DEPLOY_INFO] if f.endswith(deploy.DEPLOY_INFO) else what.get(os.path.splitext(f)[1], ""))
            for f in deploy.exported_files(save)
        ]
        if precision != "fp32":
            print(f"export: {precision_check(save, model.backbone.in_channels, size, batch_size)}", flush=True)
    card = deploy.write_model_card(save, {**cfg.model_cfg, "num_classes": model.num_classes})
    written.append((card, "the model card: the model section of the config it was built from"))
    for path, what in written:
        print(f"export: wrote {path}" + (f" ({what})" if what else ""), flush=True)
    return save


def precision_check(prefix: str, in_channels: int, size, batch_size: int = 0) -> str:
    """One line comparing the export's recorded-precision predictor with its fp32 predictor on a random input."""
    from segmenter import deploy

    x = np.random.RandomState(0).uniform(-1, 1, (batch_size or 1, in_channels, *size)).astype("float32")
    ref = deploy.create_predictor(prefix, precision="fp32")(x)[0]  # [B, n_cls, H, W]
    pred = deploy.create_predictor(prefix)
    out = pred(x)[0]
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    return (
        f"the {pred.precision} predictor on this CPU, a random input: max|logits - fp32| "
        f"{float(np.abs(out - ref).max()):.3g} (max|fp32| {float(np.abs(ref).max()):.3g}), argmax agreement "
        f"{100 * agree:.2f}%"
    )


def run_save_panels(cfg: Config, model_path: str, n: int, save_dir: str, **overrides) -> list[str]:
    """tools/val.py --save_panels: the n worst and n best val images of a config's model as panels, inference
    options as run_val takes them (the pictures get the model and options; they never import this runner)."""
    if n < 1:
        raise ValueError(f"--save_panels {n}: give the number of worst and of best images to draw (>= 1).")
    model = load_model(cfg, model_path)
    return save_extreme_panels(
        model,
        Builder(cfg).val_dataset,
        model.num_classes,
        n,
        save_dir,
        test_kwargs(cfg, overrides),
        class_names_of(cfg, model.num_classes),
    )

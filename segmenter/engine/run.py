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

from segmenter.convert.files import resolve_weights
from segmenter.convert.matching import WeightsMismatchError
from segmenter.engine.builder import Builder, checker_for
from segmenter.engine.checkpoint import run_sections
from segmenter.engine.cli import say
from segmenter.engine.config_check import ConfigError, check_keys, check_yaml, take_class_names
from segmenter.engine.evaluate import evaluate
from segmenter.engine.losses import total_loss
from segmenter.engine.safe_load import describe_model, model_section_of, read_weights
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
    """PaddleSeg Config with --opts key=value overrides; a missing file is an error naming it. With verbose, the
    Builder logs each component's resolved config as PaddleSeg does."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config {path} does not exist; pass --config with a YAML from configs/.")
    check_yaml(path)
    check_keys(path, parse_from_yaml(path))  # before PaddleSeg's own checks, whose messages suggest nothing
    for opt in opts or []:  # PaddleSeg asserts on these, with a traceback
        if "=" not in opt:
            raise ConfigError(f"--opts {opt}: give key=value, e.g. model.backbone.depth=1.")
    try:
        cfg = Config(
            path,
            learning_rate=learning_rate,
            batch_size=batch_size,
            iters=iters,
            opts=opts,
            checker=checker_for(parse_from_yaml(path)),
        )  # evaluation-only configs too
    except AssertionError as e:  # PaddleSeg's Config refuses an --opts key that is not in the config this way
        if not opts:
            raise
        raise ConfigError(f"--opts {' '.join(opts)}: {e} Keys are full paths, e.g. model.backbone.depth=1.") from None
    check_keys(path, cfg.dic)
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
    """Model from cfg with weights from model_path (a .pdparams file or a checkpoint folder), read without
    running code and loaded strictly; a mismatch names the keys and the architecture the file was built for."""
    model_path = resolve_weights(model_path, "--model_path")
    model = Builder(cfg).model
    state = read_weights(model_path)
    try:
        load_state_dict_strict(model, state, model_path)
    except WeightsMismatchError as e:
        raise WeightsMismatchError(f"{e}\n{fitting_config_hint(model_path, state, cfg)}") from None
    model.eval()
    return model


def fitting_config_hint(model_path: str, state: dict, cfg: Config) -> str:
    """Which model section would fit the weights: the one recorded beside them, else read from their shapes."""
    recorded = model_section_of(model_path)
    if recorded:
        return (
            f"  {model_path} was trained with model: {describe_model(recorded)} "
            f"(recorded in its state.json); the config {getattr(cfg, 'path', 'in use')} has: "
            f"{describe_model(cfg.dic.get('model'))}."
        )
    try:
        from segmenter.convert.arch import infer_arch

        arch = infer_arch(state, model_path, norm_eps=1e-6, pos_embed_interp="bilinear")
        return (
            f"  the file holds embed_dim={arch.embed_dim}, depth={arch.depth}, patch_size={arch.patch_size}, "
            f"num_classes={arch.num_classes}, decoder={arch.decoder}; "
            f"the config {getattr(cfg, 'path', 'in use')} has: "
            f"{describe_model(cfg.dic.get('model'))}. `python tools/convert.py {model_path} out.pdparams "
            f"--save-config cfg.yml` writes a config for it."
        )
    except (ValueError, KeyError):
        return "  it is not a whole Segmenter in our layout; convert it with tools/convert.py (see --from)."


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
    """Evaluate a trained model on cfg's val_dataset and print the report."""
    model = load_model(cfg, model_path)
    ds = Builder(cfg).val_dataset
    kw = test_kwargs(cfg, overrides)
    base, mode = "slice" if kw["is_slide"] else "whole", inference_mode(kw)
    window = f", windows {kw['crop_size']} stride {kw['stride']}" if kw["is_slide"] else ""
    say(
        "val",
        cfg,
        weights=resolve_weights(model_path),
        val_set=f"{len(ds)} images ({cfg.val_dataset_cfg.get('type')})",
        inference=mode + window + precision_note(kw["precision"]),
    )
    m = evaluate(model, ds, model.num_classes, **kw)
    rows = ([(base, m["plain"])] if "plain" in m else []) + [(mode, m)]
    for name, r in rows:  # the published tables' columns: "slice", then "flip"
        print(
            f"[EVAL] {name}: {len(ds)} images  mIoU {r['mIoU']:.4f}  Acc {r['Acc']:.4f}  Kappa {r['Kappa']:.4f}  "
            f"Dice {r['Dice']:.4f}"
        )
    print(class_table(class_names_of(cfg, model.num_classes), m, mode))
    return m


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
    size [H, W] for paddle.inference (<save>.json/.pdiparams) or ONNX (<save>, a .onnx file), with its model card.
    precision "bf16" (paddle only): recorded for the predictor, which is checked against fp32 on this CPU."""
    from segmenter import deploy
    from segmenter.convert.files import write_model_card

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
        input=f"{list(size)}, batch {batch_size or 'variable'}",
        format=f"ONNX opset {deploy.ONNX_OPSET}" if fmt == "onnx" else f"paddle.inference, {precision}",
    )
    if fmt == "onnx":
        deploy.export_onnx(model, save, size, batch_size=batch_size or None)
        written = save
    else:
        deploy.export(model, save, size, batch_size=batch_size or None, precision=precision)
        written = f"{save}.json/.pdiparams/{deploy.DEPLOY_INFO[1:]} (paddle {paddle.__version__}, {precision})"
        if precision != "fp32":
            print(f"export: {precision_check(save, model.backbone.in_channels, size, batch_size)}", flush=True)
    card = write_model_card(save, {**cfg.model_cfg, "num_classes": model.num_classes})
    print(f"export: wrote {written} and {card}", flush=True)
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

"""Config -> builder -> engine: what tools/train.py, val.py and predict.py call."""
import os
import random

import numpy as np
import paddle
import paddle.distributed as dist
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs.config import parse_from_yaml

from segmenter.convert.matching import WeightsMismatchError
from segmenter.engine.builder import Builder, checker_for
from segmenter.engine.checkpoint import run_sections
from segmenter.engine.config_check import check_keys, check_yaml
from segmenter.engine.evaluate import evaluate
from segmenter.engine.losses import total_loss
from segmenter.engine.safe_load import describe_model, model_section_of, read_weights
from segmenter.engine.train import train
from segmenter.models.weights import load_state_dict_strict
from segmenter.visualize.val_panels import save_extreme_panels


def load_config(path: str, opts: list = None, iters: int = None, batch_size: int = None,
                learning_rate: float = None) -> Config:
    """PaddleSeg Config with --opts key=value overrides; a missing file is an error naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config {path} does not exist; pass --config with a YAML from configs/.")
    check_yaml(path)
    check_keys(path, parse_from_yaml(path))  # before PaddleSeg's own checks, whose messages suggest nothing
    cfg = Config(path, learning_rate=learning_rate, batch_size=batch_size, iters=iters, opts=opts,
                 checker=checker_for(parse_from_yaml(path)))  # evaluation-only configs too
    check_keys(path, cfg.dic)
    cfg.path = path
    return cfg


def test_kwargs(cfg: Config, overrides: dict) -> dict:
    """Evaluation options: test_config from the YAML, then any non-None command-line override."""
    tc = dict(cfg.test_config or {})
    kw = {"is_slide": tc.get("is_slide", False), "crop_size": tc.get("crop_size"), "stride": tc.get("stride"),
          "window_batch_size": 1, "flip_horizontal": False, "scales": (1.0,)}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if kw["is_slide"] and (not kw["crop_size"] or not kw["stride"]):
        raise ValueError(f"slide inference needs crop_size and stride (got {kw['crop_size']}, {kw['stride']}); "
                         "set --crop_size/--stride or test_config in the YAML.")
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
    kw.setdefault("run", run_sections(cfg.dic, save_interval=kw.get("save_interval"), log_iters=kw.get("log_iters")))
    return train(model, train_ds, b.optimizer, b.lr_scheduler, loss_fn, cfg.iters, cfg.batch_size, save_dir,
                 val_dataset=val_ds, num_classes=model.num_classes, seed=seed, **kw)


def built(cfg: Config, builder: SegBuilder, name: str):
    """builder.<name> (a dataset); PaddleSeg's bare assertions (an empty list) become errors naming the files."""
    try:
        return getattr(builder, name)
    except AssertionError as e:
        section = cfg.dic.get(name) or {}
        files = {k: v for k, v in section.items() if k in ("dataset_root", "train_path", "val_path", "file_list")}
        raise ValueError(f"config {getattr(cfg, 'path', '')}: {name} {files}: {e} Add samples to the list or fix "
                         "the paths.") from None


def load_model(cfg: Config, model_path: str):
    """Model from cfg with weights from model_path (a .pdparams file or a checkpoint folder), read without
    running code and loaded strictly; a mismatch names the keys and the architecture the file was built for."""
    if os.path.isdir(model_path):
        model_path = os.path.join(model_path, "model.pdparams")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"--model_path {model_path} does not exist; pass save_dir/best_model or a .pdparams.")
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
        return (f"  {model_path} was trained with model: {describe_model(recorded)} "
                f"(recorded in its state.json); the config {getattr(cfg, 'path', 'in use')} has: "
                f"{describe_model(cfg.dic.get('model'))}.")
    try:
        from segmenter.convert.arch import infer_arch
        arch = infer_arch(state, model_path, norm_eps=1e-6, pos_embed_interp="bilinear")
        return (f"  the file holds embed_dim={arch.embed_dim}, depth={arch.depth}, patch_size={arch.patch_size}, "
                f"num_classes={arch.num_classes}, decoder={arch.decoder}; "
                f"the config {getattr(cfg, 'path', 'in use')} has: "
                f"{describe_model(cfg.dic.get('model'))}. `python tools/convert.py {model_path} out.pdparams "
                f"--save-config cfg.yml` writes a config for it.")
    except (ValueError, KeyError):
        return "  it is not a whole Segmenter in our layout; convert it with tools/convert.py (see --from)."


def run_val(cfg: Config, model_path: str, **overrides) -> dict:
    """Evaluate a trained model on cfg's val_dataset and print the report."""
    model = load_model(cfg, model_path)
    ds = Builder(cfg).val_dataset
    kw = test_kwargs(cfg, overrides)
    m = evaluate(model, ds, model.num_classes, **kw)
    base = "slice" if kw["is_slide"] else "whole"
    mode = base + (" + flip" if kw["flip_horizontal"] else "") + \
        (f" + scales {list(kw['scales'])}" if tuple(kw["scales"]) != (1.0,) else "")
    rows = ([(base, m["plain"])] if "plain" in m else []) + [(mode, m)]
    for name, r in rows:  # the published tables' columns: "slice", then "flip"
        print(f"[EVAL] {name}: {len(ds)} images  mIoU {r['mIoU']:.4f}  Acc {r['Acc']:.4f}  Kappa {r['Kappa']:.4f}  "
              f"Dice {r['Dice']:.4f}")
    print(f"[EVAL] class IoU ({mode}):       " + " ".join(f"{v:.4f}" for v in m["class_iou"]))
    print(f"[EVAL] class precision ({mode}): " + " ".join(f"{v:.4f}" for v in m["class_precision"]))
    return m


def run_save_panels(cfg: Config, model_path: str, n: int, save_dir: str, **overrides) -> list[str]:
    """tools/val.py --save_panels: the n worst and n best val images of a config's model as panels, inference
    options as run_val takes them (the pictures get the model and options; they never import this runner)."""
    if n < 1:
        raise ValueError(f"--save_panels {n}: give the number of worst and of best images to draw (>= 1).")
    model = load_model(cfg, model_path)
    return save_extreme_panels(model, Builder(cfg).val_dataset, model.num_classes, n, save_dir,
                               test_kwargs(cfg, overrides))

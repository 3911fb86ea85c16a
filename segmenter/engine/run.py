"""Config -> builder -> engine: what tools/train.py, val.py and predict.py call."""
import os
import random

import numpy as np
import paddle
import paddle.distributed as dist
from paddleseg.cvlibs import Config, SegBuilder

from segmenter.engine.evaluate import evaluate
from segmenter.engine.train import train


def load_config(path: str, opts: list = None, iters: int = None, batch_size: int = None,
                learning_rate: float = None) -> Config:
    """PaddleSeg Config with --opts key=value overrides; a missing file is an error naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config {path} does not exist; pass --config with a YAML from configs/.")
    return Config(path, learning_rate=learning_rate, batch_size=batch_size, iters=iters, opts=opts)


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
    b = SegBuilder(cfg)
    model, train_ds = b.model, b.train_dataset
    val_ds = b.val_dataset if kw.get("do_eval") else None
    losses = b.loss
    coefs = losses["coef"]

    def loss_fn(logits, label):
        """One loss per model output (PaddleSeg's rule): a list when an auxiliary head adds outputs."""
        outs = list(logits) if isinstance(logits, (list, tuple)) else [logits] * len(coefs)
        if len(outs) != len(coefs):
            raise ValueError(f"the model gives {len(outs)} outputs in training but the config's loss has "
                             f"{len(coefs)} types/coef; give one loss per output (e.g. coef: [1, 0.4]).")
        return sum(c * l(o, label) for c, l, o in zip(coefs, losses["types"], outs))

    kw.setdefault("eval_kwargs", test_kwargs(cfg, {}))  # evaluate during training as tools/val.py does
    return train(model, train_ds, b.optimizer, b.lr_scheduler, loss_fn, cfg.iters, cfg.batch_size, save_dir,
                 val_dataset=val_ds, num_classes=model.num_classes, seed=seed, **kw)


def load_model(cfg: Config, model_path: str):
    """Model from cfg with weights from model_path (a .pdparams file or a checkpoint folder)."""
    if os.path.isdir(model_path):
        model_path = os.path.join(model_path, "model.pdparams")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"--model_path {model_path} does not exist; pass save_dir/best_model or a .pdparams.")
    model = SegBuilder(cfg).model
    model.set_state_dict(paddle.load(model_path))
    model.eval()
    return model


def run_val(cfg: Config, model_path: str, **overrides) -> dict:
    """Evaluate a trained model on cfg's val_dataset and print the report."""
    model = load_model(cfg, model_path)
    ds = SegBuilder(cfg).val_dataset
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

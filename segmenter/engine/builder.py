"""PaddleSeg's Config and SegBuilder, extended to the two configs PaddleSeg 2.8 refuses.

- A dataset class that takes `num_classes` as an argument (our `SegmenterFileList`): PaddleSeg's builder insists on
  a class-level `NUM_CLASSES` for any train set but its own `Dataset` ("must have `NUM_CLASSES` attr"). Here the
  model's `num_classes` comes from the dataset's config entry instead, checked against the model's own.
- An evaluation-only config (`model` and `val_dataset`, no training sections), for tools/val.py, predict.py and
  export.py: PaddleSeg's checker stops at "No train_dataset specified".
Every other config goes through PaddleSeg's own checks and builder unchanged.
"""

import contextlib
from functools import cached_property
from typing import Iterator, Optional

import paddle
from paddleseg.cvlibs import SegBuilder
from paddleseg.cvlibs import config_checker as checker
from paddleseg.utils import logger


def checker_for(dic: dict) -> Optional[checker.ConfigChecker]:
    """PaddleSeg's default checker; for an evaluation-only config (no train_dataset) the rules that concern
    evaluation: a model, a val_dataset, and the loss rules where a loss is given."""
    if "train_dataset" in dic:
        return None  # Config builds PaddleSeg's default checker
    return checker.ConfigChecker([EvaluationOnlyRule(), checker.DefaultLossRule("loss")], allow_update=True)


class EvaluationOnlyRule(checker.Rule):
    """A config without train_dataset must still give the model and the data it is evaluated on."""

    def check_and_correct(self, cfg):
        missing = [k for k in ("model", "val_dataset") if k not in cfg.dic]
        if missing:
            raise ValueError(
                f"config {getattr(cfg, 'path', '')}: no train_dataset, so it is evaluation-only, but it "
                f"lacks {missing}; add them (or a train_dataset to train)."
            )


class Builder(SegBuilder):
    """SegBuilder whose model also builds from an evaluation-only config or a dataset that takes num_classes."""

    @cached_property
    def model(self) -> paddle.nn.Layer:
        data = self.config.train_dataset_cfg or self.config.val_dataset_cfg
        if (
            not data
            or data.get("type") == "Dataset"
            or (self.config.train_dataset_cfg and hasattr(self.train_dataset_class, "NUM_CLASSES"))
        ):
            with self.quiet():  # PaddleSeg's own rules
                return super().model
        model_cfg = self.config.model_cfg
        n = data.get("num_classes", model_cfg.get("num_classes"))
        if n is None:
            raise ValueError(
                f"config: neither model.num_classes nor {data['type']}'s num_classes is set; set model.num_classes."
            )
        if model_cfg.setdefault("num_classes", n) != n:
            raise ValueError(
                f"config: model.num_classes is {model_cfg['num_classes']} but {data['type']} has "
                f"num_classes {n}; make them equal."
            )
        self.show_msg("model", model_cfg)
        return self.build_component(model_cfg)

    def show_msg(self, name: str, cfg: dict) -> None:
        """PaddleSeg logs each component's resolved config as it builds it: only with --verbose (cfg.verbose)."""
        if getattr(self.config, "verbose", False):
            super().show_msg(name, cfg)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """PaddleSeg's warnings that it filled in a default as intended (the dataset's num_classes and in_channels
        copied into the model, its ignore_index into a loss lacking one, as in every config of configs/): shown
        only with --verbose."""
        if getattr(self.config, "verbose", False):
            yield
            return
        level, logger.log_level = logger.log_level, 0  # errors only
        try:
            yield
        finally:
            logger.log_level = level

    def _build_loss(self, loss_name: str, loss_cfg: dict):
        with self.quiet():
            return super()._build_loss(loss_name, loss_cfg)

    @cached_property
    def train_dataset(self) -> paddle.io.Dataset:
        if not self.config.train_dataset_cfg:
            raise ValueError(
                "config has no train_dataset: it can evaluate and predict, not train; add a train_dataset section."
            )
        return super().train_dataset

"""Every dataset class a Segmenter user reaches for, on a stand-in of its real layout: evaluation with slice +
flip through PaddleSeg's val protocol gives the right answer for a model that reads the class off the image (so
an H/W swap, a missing normalisation, a lost label shift or a mis-undone resize fails), and training runs."""

import numpy as np
import paddle
import pytest
import yaml

import segmenter  # noqa: F401
from segmenter.engine.evaluate import evaluate
from segmenter.engine.run import load_config, run_train
from tests import layouts
from tests.helpers import run_tool_in_process
from tests.test_data_errors import TINY_MODEL

NORM = "{type: Normalize, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}"
VAL_T = f"[{{type: ResizeByShort, short_size: 96}}, {NORM}]"  # non-trivial resize, undone before counting
TRAIN_T = f"[{{type: RandomPaddingCrop, crop_size: [48, 48]}}, {{type: RandomHorizontalFlip}}, {NORM}]"

DATASETS = {  # type -> (layout, classes, extra keys for train / val)
    "ADE20K": (layouts.ade20k, 150, {}, {}),
    "Cityscapes": (layouts.cityscapes, 19, {}, {}),
    "PascalContext": (layouts.pascal_context, 60, {}, {}),
    "PascalVOC": (layouts.pascal_voc, 21, {}, {}),
    "Dataset": (
        layouts.file_list,
        6,
        {"train_path": "{root}/train.txt", "num_classes": 6},
        {"val_path": "{root}/val.txt", "num_classes": 6},
    ),
    "SegmenterFileList": (
        layouts.file_list,
        6,
        {"file_list": "{root}/train.txt", "num_classes": 6},
        {"file_list": "{root}/val.txt", "num_classes": 6},
    ),
}


class Oracle(paddle.nn.Layer):
    """Logits that pick, per pixel, the class written in the red channel (layouts.image_of), after undoing the
    normalisation (mean = std = 0.5)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        red = (x[:, :1] * 0.5 + 0.5) * 255  # [B, 1, H, W] in 0..255
        c = paddle.arange(self.num_classes, dtype="float32").reshape([1, -1, 1, 1])
        return [-(((red - (40 * c + 20)) / 20) ** 2)]


def config(tmp_path, kind: str) -> tuple[str, int]:
    make, n, train_extra, val_extra = DATASETS[kind]
    root = make(str(tmp_path), n_train=2, n_val=2)
    ours = kind == "SegmenterFileList"
    train = {
        "type": kind,
        "dataset_root": root,
        "mode": "train",
        **({} if ours else {"transforms": yaml.safe_load(TRAIN_T)}),
        **{k: v.format(root=root) if isinstance(v, str) else v for k, v in train_extra.items()},
    }
    val = {
        "type": kind,
        "dataset_root": root,
        "mode": "val",
        **({} if ours else {"transforms": yaml.safe_load(VAL_T)}),
        **{k: v.format(root=root) if isinstance(v, str) else v for k, v in val_extra.items()},
    }
    model = yaml.safe_load(TINY_MODEL.format(n=n))
    if ours:  # PaddleSeg's Config refuses any train class but its own Dataset without a class-level NUM_CLASSES,
        # and train/val of different types: ours is built by the engine directly (see test below)
        return train, val, n
    path = tmp_path / f"{kind}.yml"
    path.write_text(yaml.safe_dump({"batch_size": 2, "iters": 2, "train_dataset": train, "val_dataset": val, **model}))
    return str(path), n


def segmenter_file_list_config(tmp_path, **model_over) -> str:
    """A YAML whose train and val sets are our SegmenterFileList (num_classes per config, no class NUM_CLASSES)."""
    tr, va, n = config(tmp_path, "SegmenterFileList")
    body = yaml.safe_load(TINY_MODEL.format(n=n))
    body["model"].update(model_over)
    path = tmp_path / "ours.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "batch_size": 1,
                "iters": 2,
                "train_dataset": tr,
                "val_dataset": va,
                "test_config": {"is_slide": True, "crop_size": [64, 64], "stride": [40, 40]},
                **body,
            }
        )
    )
    return str(path)


def test_segmenter_file_list_evaluates_right_and_trains(tmp_path):
    from segmenter.engine.builder import Builder

    path = segmenter_file_list_config(tmp_path)
    cfg = load_config(path)  # PaddleSeg's Config refused this train set: "must have `NUM_CLASSES` attr"
    val = Builder(cfg).val_dataset
    n = cfg.val_dataset_cfg["num_classes"]
    m = evaluate(
        Oracle(n), val, n, is_slide=True, crop_size=[64, 64], stride=[40, 40], flip_horizontal=True, progress=False
    )
    assert m["Acc"] >= 0.95, f"SegmenterFileList: the oracle scores Acc {m['Acc']:.4f}"
    out = run_train(cfg, str(tmp_path / "run"), save_interval=2, log_iters=100, do_eval=True)
    assert 0.0 <= out["mIoU"] <= 1.0 and out["confusion"].sum() > 0, f"SegmenterFileList: training gave {out}"
    # an evaluation-only config (model + val_dataset) evaluates the trained model with tools/val.py
    full = yaml.safe_load(open(path))
    only = tmp_path / "val_only.yml"
    only.write_text(yaml.safe_dump({k: full[k] for k in ("model", "val_dataset", "test_config")}))
    run_tool_in_process("val.py", ["--config", str(only), "--model_path", str(tmp_path / "run" / "iter_2")])


def test_segmenter_file_list_num_classes_must_equal_the_model(tmp_path):
    from segmenter.engine.builder import Builder

    cfg = load_config(segmenter_file_list_config(tmp_path, num_classes=5))
    with pytest.raises(ValueError, match=r"model.num_classes is 5 but SegmenterFileList has num_classes 6"):
        Builder(cfg).model


def test_evaluation_only_config_cannot_train(tmp_path):
    full = yaml.safe_load(open(segmenter_file_list_config(tmp_path)))
    only = tmp_path / "val_only.yml"
    only.write_text(yaml.safe_dump({k: full[k] for k in ("model", "val_dataset")}))
    with pytest.raises(ValueError, match="no train_dataset: it can evaluate and predict, not train"):
        run_train(load_config(str(only)), str(tmp_path / "run"))


@pytest.mark.parametrize("kind", [k for k in DATASETS if k != "SegmenterFileList"])
def test_dataset_class_evaluates_right_and_trains(kind, tmp_path):
    path, n = config(tmp_path, kind)
    cfg = load_config(path)
    from paddleseg.cvlibs import SegBuilder

    val = SegBuilder(cfg).val_dataset
    m = evaluate(
        Oracle(n), val, n, is_slide=True, crop_size=[64, 64], stride=[40, 40], flip_horizontal=True, progress=False
    )
    drawn = m["class_iou"][: layouts.N_CLASSES_DRAWN]
    assert m["Acc"] >= 0.95 and m["plain"]["Acc"] >= 0.95, (
        f"{kind}: the oracle scores Acc {m['Acc']:.4f} (plain {m['plain']['Acc']:.4f}); class IoU {np.round(drawn, 3)}"
    )
    out = run_train(cfg, str(tmp_path / "run"), save_interval=2, log_iters=100, do_eval=True)
    assert 0.0 <= out["mIoU"] <= 1.0, f"{kind}: training's evaluation gave {out}"

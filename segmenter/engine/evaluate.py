"""Evaluation over a dataset: confusion matrix summed over images (and ranks), then metrics.

Follows PaddleSeg's val protocol: a val sample's label may be [1, H, W] or [H, W] at the image's ORIGINAL size
while the image went through the val transforms (ResizeByShort, Resize, Padding...), recorded in
sample['trans_info']; the predicted probabilities are brought back to the original size before counting.
"""

from typing import Optional

import numpy as np
import paddle
import paddle.distributed as dist

from segmenter.datasets.checked import CheckedDataset
from segmenter.engine.compiled import inference_model
from segmenter.engine.infer import predict_probs, reverse_transform
from segmenter.engine.metrics import confusion_matrix, metrics_from_confusion
from segmenter.engine.progress import progress as progress_of
from segmenter.engine.stops import collective


def sample_label(s: dict) -> np.ndarray:
    """The label of a val sample as [H, W] (PaddleSeg's datasets give [1, H, W])."""
    label = np.asarray(s["label"])
    return label[0] if label.ndim == 3 and label.shape[0] == 1 else label


def evaluate(
    model,
    dataset,
    num_classes: int,
    is_slide: bool = False,
    crop_size=None,
    stride=None,
    window_batch_size: int = 1,
    flip_horizontal: bool = False,
    scales=(1.0,),
    ignore_index: int = 255,
    progress: bool = True,
    fast_path: Optional[bool] = None,
    precision: str = "fp32",
) -> dict:
    """Metrics of model on dataset; with several ranks each takes every world_size-th image and counts are summed.
    With flip or scales, out["plain"] holds the metrics of the same run's unaugmented (scale 1.0, no flip) pass,
    so one evaluation gives both columns of the published tables ("slice" and "flip"). The model's train/eval
    mode is restored afterwards. fast_path (default None: on unless SEGMENTER_FAST_PATH=0): run each repeated input
    size of 512x512 and up through a predictor compiled from the current weights (engine/compiled.py); False: the
    dygraph model. precision "bf16": every size through a bf16 predictor (engine/compiled.py)."""
    was_training = model.training
    model.eval()
    net = inference_model(model, fast_path, precision)
    rank, world = dist.get_rank(), dist.get_world_size()
    data = CheckedDataset(dataset, num_classes)
    augmented = flip_horizontal or tuple(scales) != (1.0,)
    cm = np.zeros((2, num_classes, num_classes), np.int64)  # [augmented, plain]
    with paddle.no_grad():
        mine = range(rank, len(dataset), world)
        for i in progress_of(mine, len(mine), "evaluate", enabled=progress and rank == 0):
            s = data[i]
            label = sample_label(s)
            x = paddle.to_tensor(np.asarray(s["img"], np.float32)[None])  # [3, H, W] -> [1, 3, H, W]
            probs, plain = predict_probs(
                net, x, is_slide, crop_size, stride, window_batch_size, flip_horizontal, scales, with_plain=True
            )
            probs = reverse_transform(probs, s.get("trans_info"))
            if tuple(probs.shape[2:]) != label.shape:
                raise ValueError(
                    f"evaluate: {data.name(i)}: label is {label.shape[0]}x{label.shape[1]} "
                    f"but the prediction, with trans_info {s.get('trans_info')} undone, is "
                    f"{probs.shape[2]}x{probs.shape[3]}; the label must match the image's size."
                )
            cm[0] += confusion_matrix(probs.argmax(1)[0].numpy(), label, num_classes, ignore_index)
            if augmented and plain is not None:
                plain = reverse_transform(plain, s.get("trans_info"))
                cm[1] += confusion_matrix(plain.argmax(1)[0].numpy(), label, num_classes, ignore_index)
    if world > 1:
        t = paddle.to_tensor(cm)
        with collective("evaluate: summing the confusion matrices of the ranks"):
            dist.all_reduce(t)
        cm = t.numpy()
    model.train(was_training)
    out = metrics_from_confusion(cm[0])
    out["confusion"] = cm[0]
    if augmented and cm[1].sum() > 0:
        out["plain"] = metrics_from_confusion(cm[1])
        out["plain"]["confusion"] = cm[1]
    return out

"""Evaluation over a dataset: confusion matrix summed over images (and ranks), then metrics."""
import numpy as np
import paddle
import paddle.distributed as dist
from tqdm import tqdm

from segmenter.engine.infer import predict_probs
from segmenter.engine.metrics import confusion_matrix, metrics_from_confusion


def evaluate(model, dataset, num_classes: int, is_slide: bool = False, crop_size=None, stride=None,
             window_batch_size: int = 1, flip_horizontal: bool = False, scales=(1.0,), ignore_index: int = 255,
             progress: bool = True) -> dict:
    """Metrics of model on dataset; with several ranks each takes every world_size-th image and counts are summed.
    With flip or scales, out["plain"] holds the metrics of the same run's unaugmented (scale 1.0, no flip) pass,
    so one evaluation gives both columns of the published tables ("slice" and "flip")."""
    model.eval()
    rank, world = dist.get_rank(), dist.get_world_size()
    augmented = flip_horizontal or tuple(scales) != (1.0,)
    cm = np.zeros((2, num_classes, num_classes), np.int64)  # [augmented, plain]
    with paddle.no_grad():
        for i in tqdm(range(rank, len(dataset), world), desc="evaluate", disable=not progress or rank != 0):
            s = dataset[i]
            x = paddle.to_tensor(s["img"][None])  # [3, H, W] -> [1, 3, H, W]
            probs, plain = predict_probs(model, x, is_slide, crop_size, stride, window_batch_size, flip_horizontal,
                                         scales, with_plain=True)
            cm[0] += confusion_matrix(probs.argmax(1)[0].numpy(), s["label"], num_classes, ignore_index)
            if augmented and plain is not None:
                cm[1] += confusion_matrix(plain.argmax(1)[0].numpy(), s["label"], num_classes, ignore_index)
    if world > 1:
        t = paddle.to_tensor(cm)
        dist.all_reduce(t)
        cm = t.numpy()
    model.train()
    out = metrics_from_confusion(cm[0])
    out["confusion"] = cm[0]
    if augmented and cm[1].sum() > 0:
        out["plain"] = metrics_from_confusion(cm[1])
        out["plain"]["confusion"] = cm[1]
    return out

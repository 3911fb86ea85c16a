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
    """Metrics of model on dataset; with several ranks each takes every world_size-th image and counts are summed."""
    model.eval()
    rank, world = dist.get_rank(), dist.get_world_size()
    cm = np.zeros((num_classes, num_classes), np.int64)
    with paddle.no_grad():
        for i in tqdm(range(rank, len(dataset), world), desc="evaluate", disable=not progress or rank != 0):
            s = dataset[i]
            x = paddle.to_tensor(s["img"][None])  # [3, H, W] -> [1, 3, H, W]
            probs = predict_probs(model, x, is_slide, crop_size, stride, window_batch_size, flip_horizontal, scales)
            cm += confusion_matrix(probs.argmax(1)[0].numpy(), s["label"], num_classes, ignore_index)
    if world > 1:
        t = paddle.to_tensor(cm)
        dist.all_reduce(t)
        cm = t.numpy()
    model.train()
    out = metrics_from_confusion(cm)
    out["confusion"] = cm
    return out

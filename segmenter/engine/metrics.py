"""Confusion-matrix metrics: mIoU, Acc, Kappa, Dice, per-class IoU and precision."""

import numpy as np


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Counts [num_classes, num_classes] with rows = label, columns = prediction."""
    keep = label != ignore_index
    idx = label[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)  # flat -> [C, C]


def metrics_from_confusion(cm: np.ndarray) -> dict:
    """mIoU, Acc, Kappa, Dice (mean) and per-class IoU/precision from a confusion matrix, as PaddleSeg's
    paddleseg.utils.metrics defines them: a class absent from both labels and predictions has IoU, Dice and
    precision 0 and still counts in the means (over a full val set every class is present and this is moot)."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    gt, pr, total = cm.sum(1), cm.sum(0), cm.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.nan_to_num(tp / (gt + pr - tp))
        precision = np.nan_to_num(tp / pr)
        dice = np.nan_to_num(2 * tp / (gt + pr))
    acc = tp.sum() / total if total else 0.0
    pe = (gt * pr).sum() / total**2 if total else 0.0
    kappa = (acc - pe) / (1 - pe) if pe != 1 else 0.0
    return {
        "mIoU": float(iou.mean()),
        "Acc": float(acc),
        "Kappa": float(kappa),
        "Dice": float(dice.mean()),
        "class_iou": iou,
        "class_precision": precision,
    }

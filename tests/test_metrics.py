"""Metrics against a confusion matrix computed by hand."""
import numpy as np

from segmenter.engine.metrics import confusion_matrix, metrics_from_confusion


def test_confusion_and_metrics_by_hand():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = confusion_matrix(pred, label, 3)
    # rows = label: 0 -> (0, 1); 1 -> (1, 1, 0); 2 -> (2, 0); the 255 pixel is ignored
    expected = np.array([[1, 1, 0], [1, 2, 0], [1, 0, 1]])
    assert (cm == expected).all(), f"confusion {cm.tolist()} != {expected.tolist()}"
    m = metrics_from_confusion(cm)
    iou = [1 / (2 + 3 - 1), 2 / (3 + 3 - 2), 1 / (2 + 1 - 1)]
    assert np.allclose(m["class_iou"], iou), f"class IoU {m['class_iou']} != {iou}"
    assert abs(m["mIoU"] - np.mean(iou)) < 1e-12, f"mIoU {m['mIoU']} != {np.mean(iou)}"
    acc = 4 / 7
    assert abs(m["Acc"] - acc) < 1e-12, f"Acc {m['Acc']} != {acc}"
    pe = (2 * 3 + 3 * 3 + 2 * 1) / 49
    kappa = (acc - pe) / (1 - pe)
    assert abs(m["Kappa"] - kappa) < 1e-12, f"Kappa {m['Kappa']} != {kappa}"
    dice = [2 * 1 / 5, 2 * 2 / 6, 2 * 1 / 3]
    assert abs(m["Dice"] - np.mean(dice)) < 1e-12, f"Dice {m['Dice']} != {np.mean(dice)}"
    prec = [1 / 3, 2 / 3, 1 / 1]
    assert np.allclose(m["class_precision"], prec), f"precision {m['class_precision']} != {prec}"

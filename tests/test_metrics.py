"""Metrics against a confusion matrix computed by hand."""

import numpy as np
import pytest

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


@pytest.mark.parametrize("ignore_index", [255, 0, 2, 4, -1])
def test_confusion_honours_any_ignore_index(ignore_index):
    """Pixels labelled ignore_index are left out whatever its value, also a valid class id (0, 2) or -1."""
    rs = np.random.RandomState(ignore_index % 97)
    c = 4
    label = rs.randint(0, c, (9, 11))
    label[rs.rand(9, 11) < 0.3] = ignore_index
    pred = rs.randint(0, c, (9, 11))
    want = np.zeros((c, c), np.int64)
    for y, p in zip(label.ravel(), pred.ravel()):
        if y != ignore_index:
            want[y, p] += 1
    got = confusion_matrix(pred, label, c, ignore_index)
    assert (got == want).all(), f"ignore_index {ignore_index}: {got.tolist()} != {want.tolist()}"


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_leaves_the_mode_it_found(tmp_path, training):
    from paddleseg.cvlibs import SegBuilder

    import segmenter  # noqa: F401  (registers the components)
    from segmenter.engine.evaluate import evaluate
    from segmenter.engine.run import load_config
    from tests.engine_helpers import write_tiny_config

    b = SegBuilder(load_config(write_tiny_config(tmp_path)))
    model = b.model
    model.train(training)
    evaluate(model, b.val_dataset, model.num_classes, progress=False)
    modes = {layer.training for layer in model.sublayers(include_self=True)}
    assert modes == {training}, f"model was {'train' if training else 'eval'}; after evaluate its layers are {modes}"

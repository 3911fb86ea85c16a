"""Paddle's notes about its own behaviour never reach a user (segmenter/quiet.py); anything else still does."""

import warnings

import paddle

from segmenter import quiet
from segmenter.models import Segmenter, SegmenterViT


def test_paddles_notes_are_silenced_and_ours_are_not(tmp_path):
    """With the filters `import segmenter` installs (pytest resets filters around each test, so they are installed
    again here): a BatchNorm forward in training and a traced export say nothing; a warning of ours still shows."""
    from segmenter import deploy

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.silence_import_warnings()
        bn = paddle.nn.BatchNorm2D(4)
        bn.train()
        bn(paddle.rand([2, 4, 3, 3]))
        m = Segmenter(3, SegmenterViT(img_size=32, embed_dim=32, depth=1, num_heads=2), {"name": "linear"})
        deploy.export(m, str(tmp_path / "m"), (32, 32))
        warnings.warn("fast path: a note of ours", UserWarning, stacklevel=1)
    said = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught]
    assert len(said) == 1 and "a note of ours" in said[0], said

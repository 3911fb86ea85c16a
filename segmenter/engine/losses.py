"""Losses that work on paddle 3 (PaddleSeg 2.8's CrossEntropyLoss fails on type promotion there)."""
import paddle
import paddle.nn.functional as F
from paddleseg.cvlibs import manager


@manager.LOSSES.add_component
class SegmenterCrossEntropyLoss(paddle.nn.Layer):
    """Pixel-wise cross entropy averaged over non-ignored pixels.

    Args:
        ignore_index (int, optional): Label value excluded from the loss. Default: 255.
    """

    def __init__(self, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        """logits [B, C, H, W], label [B, H, W] int64 -> scalar loss."""
        label = label.astype("int64")
        valid = (label != self.ignore_index).astype("float32")
        safe = paddle.where(label == self.ignore_index, paddle.zeros_like(label), label)
        logp = F.log_softmax(logits, axis=1)
        nll = -paddle.take_along_axis(logp, safe.unsqueeze(1), axis=1).squeeze(1)  # [B, 1, H, W] -> [B, H, W]
        return (nll * valid).sum() / paddle.clip(valid.sum(), min=1.0)

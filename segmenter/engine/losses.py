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
        # Class axis last: paddle 3.3's CPU log_softmax over axis 1 of [2, 150, 512, 512] took 57 s, the fused
        # softmax-cross-entropy on the channels-last copy 0.5 s (BENCHMARKS.md, "Where the time goes").
        logits = logits.transpose([0, 2, 3, 1])  # [B, C, H, W] -> [B, H, W, C]
        # reduction="none" gives 0 at ignored pixels; the mean is taken over valid pixels below
        nll = F.cross_entropy(logits, label, ignore_index=self.ignore_index, reduction="none", axis=-1)
        return nll.sum() / paddle.clip(valid.sum(), min=1.0)

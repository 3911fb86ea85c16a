"""Losses that work on paddle 3.

PaddleSeg 2.8's CrossEntropyLoss computes its denominator as float32 x int64 (`label * mask`, `mask * coef`) and
its OhemCrossEntropyLoss adds an int64 mask to float probabilities, which paddle 3 refuses (no implicit type
promotion); its DiceLoss overwrites the caller's label. The classes below are PaddleSeg's own with that one method
rewritten; they take PaddleSeg's names in the LOSSES manager, so a standard PaddleSeg config
(`loss: {types: [{type: CrossEntropyLoss, ...}]}`, also inside `MixedLoss`) runs unchanged.
"""

import paddle
import paddle.nn.functional as F
from paddleseg.cvlibs import manager
from paddleseg.models import losses as paddleseg_losses


class CrossEntropyLoss(paddleseg_losses.CrossEntropyLoss):
    """PaddleSeg's CrossEntropyLoss (same arguments, same values) with its paddle-3 dtype error fixed.

    The loss is sum(w[y] * nll) / sum(w[y]) over the pixels that count: the non-ignored ones, or with
    avg_non_ignore False all pixels (an ignored pixel adds 0 to the sum and 1 to the denominator).
    top_k_percent_pixels < 1 keeps only the largest per-pixel losses, as PaddleSeg does.

    Args:
        weight (list, optional): Per-class weight, one per class. Default: None.
        ignore_index (int, optional): Label value left out of the loss. Default: 255.
        top_k_percent_pixels (float, optional): Fraction of pixels (hardest first) kept. Default: 1.0.
        avg_non_ignore (bool, optional): Average over non-ignored pixels only. Default: True.
        data_format (str, optional): 'NCHW' or 'NHWC' logits. Default: 'NCHW'.
    """

    def _post_process_loss(self, logit, label, semantic_weights, loss):
        """Average the per-pixel loss [B, H, W] as PaddleSeg intends, in float32 throughout."""
        valid = label != self.ignore_index
        mask = valid.astype("float32") if self.avg_non_ignore else paddle.ones(label.shape, "float32")
        if loss.ndim > mask.ndim:
            loss = paddle.squeeze(loss, axis=-1)  # [B, H, W, 1] -> [B, H, W]
        loss = loss * mask
        if semantic_weights is not None:
            loss = loss * semantic_weights
        if self.weight is not None:  # F.cross_entropy already multiplied each pixel's loss by w[y]
            safe = paddle.where(valid, label, paddle.zeros_like(label))
            coef = paddle.where(
                valid,
                paddle.gather(self.weight, safe.flatten()).reshape(label.shape),
                paddle.ones(label.shape, "float32"),
            )
        else:
            coef = paddle.ones(label.shape, "float32")
        if self.top_k_percent_pixels == 1.0:
            return paddle.mean(loss) / (paddle.mean(mask * coef) + self.EPS)
        loss = loss.reshape((-1,))
        loss, indices = paddle.topk(loss, int(self.top_k_percent_pixels * loss.numel()))
        coef = paddle.gather(coef.reshape((-1,)), indices)
        coef.stop_gradient = True
        return loss.mean() / (paddle.mean(coef) + self.EPS)


class OhemCrossEntropyLoss(paddleseg_losses.OhemCrossEntropyLoss):
    """PaddleSeg's OhemCrossEntropyLoss with its paddle-3 dtype error fixed (it adds an int64 mask to float
    probabilities once more than min_kept pixels are valid): cross entropy over the valid pixels whose
    true-class probability is below max(thresh, the min_kept-th smallest such probability).

    Args:
        thresh (float, optional): Pixels predicted above this probability are easy and dropped. Default: 0.7.
        min_kept (int, optional): At least this many pixels are kept. Default: 10000.
        ignore_index (int, optional): Label value left out of the loss. Default: 255.
    """

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        n, c, h, w = logit.shape
        label = label.reshape((-1,)).astype("int64")  # [B, (1,) H, W] -> [B*H*W]
        valid = (label != self.ignore_index).astype("int64")
        num_valid = int(valid.sum())
        label = label * valid
        if 0 < self.min_kept < num_valid:
            prob = F.softmax(logit, axis=1).transpose((1, 0, 2, 3)).reshape((c, -1))  # [B, C, H, W] -> [C, B*H*W]
            # true-class probability; ignored pixels get 2 so they sort last and are never kept
            prob = (prob * F.one_hot(label, c).transpose((1, 0))).sum(axis=0) + 2.0 * (1 - valid).astype("float32")
            threshold = max(self.thresh, float(prob.sort()[self.min_kept - 1]))
            valid = valid * (prob < threshold).astype("int64")
            label = label * valid
        label = (label + (1 - valid) * self.ignore_index).reshape((n, 1, h, w))  # [B*H*W] -> [B, 1, H, W]
        mask = valid.reshape((n, 1, h, w)).astype("float32")
        loss = F.cross_entropy(logit, label, ignore_index=self.ignore_index, axis=1, reduction="none") * mask
        return paddle.mean(loss) / (paddle.mean(mask) + self.EPS)


class DiceLoss(paddleseg_losses.DiceLoss):
    """PaddleSeg's DiceLoss on a copy of the label: PaddleSeg's writes 0 into the ignored pixels of the caller's
    label in place, so a loss after it (MixedLoss [DiceLoss, CrossEntropyLoss]) would train on them as class 0.

    Args:
        weight (list, optional): Per-class weight. Default: None.
        ignore_index (int, optional): Label value left out of the loss. Default: 255.
        smooth (float, optional): Laplace smoothing. Default: 1.0.
    """

    def forward(self, logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        return super().forward(logits, labels.clone())


# Take PaddleSeg's names in its LOSSES manager (set directly: add_component would warn on every import), so a
# standard PaddleSeg config gets these fixed classes without naming anything of ours.
for _cls in (CrossEntropyLoss, OhemCrossEntropyLoss, DiceLoss):
    manager.LOSSES._components_dict[_cls.__name__] = _cls


@manager.LOSSES.add_component
class SegmenterCrossEntropyLoss(paddle.nn.Layer):
    """Pixel-wise cross entropy averaged over non-ignored pixels (kept for configs that name it; a PaddleSeg
    config's CrossEntropyLoss gives the same value).

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
        # softmax-cross-entropy on the channels-last copy 0.5 s (docs/benchmarks/history.md, "Where the time goes").
        logits = logits.transpose([0, 2, 3, 1])  # [B, C, H, W] -> [B, H, W, C]
        # reduction="none" gives 0 at ignored pixels; the mean is taken over valid pixels below
        nll = F.cross_entropy(logits, label, ignore_index=self.ignore_index, reduction="none", axis=-1)
        return nll.sum() / paddle.clip(valid.sum(), min=1.0)


def total_loss(losses: dict, logits, label: paddle.Tensor) -> paddle.Tensor:
    """sum(coef_i * loss_i) over the config's `loss` section; a MixedLoss returns a list, whose items are summed
    (it has applied its own coefficients), as PaddleSeg's loss_computation does. With a list of logits (a model
    with an auxiliary head, e.g. UPerNetViT) loss i applies to output i, PaddleSeg's rule; one tensor feeds all."""
    coefs = losses["coef"]
    outs = list(logits) if isinstance(logits, (list, tuple)) else [logits] * len(coefs)
    if len(outs) != len(coefs):
        raise ValueError(
            f"the model gives {len(outs)} outputs in training but the config's loss has "
            f"{len(coefs)} types/coef; give one loss per output (e.g. coef: [1, 0.4])."
        )
    total = 0.0
    for coef, loss, o in zip(coefs, losses["types"], outs):
        out = loss(o, label)
        total = total + coef * (sum(out) if isinstance(out, (list, tuple)) else out)
    return total

"""PaddleSeg's loss classes, by their own names from a YAML `loss:` section, against independent torch references
(value and gradient w.r.t. the logits) on random inputs with ignored pixels."""

import numpy as np
import paddle
import pytest
import torch
import torch.nn.functional as TF
from paddleseg.cvlibs import Config

import segmenter  # noqa: F401  (registers the components, replaces PaddleSeg's CrossEntropyLoss entry)
from segmenter.engine.losses import total_loss

C, IGNORE = 5, 255


def inputs(seed: int = 0):
    rs = np.random.RandomState(seed)
    x = (rs.randn(2, C, 6, 7) * 2).astype("float32")
    y = rs.randint(0, C, (2, 6, 7))
    y[rs.rand(2, 6, 7) < 0.2] = IGNORE
    return x, y


def build_losses(tmp_path, loss_yaml: str) -> dict:
    """The `loss` section as PaddleSeg's Config builds it from YAML."""
    p = tmp_path / "loss.yml"
    p.write_text(
        "batch_size: 1\niters: 1\ntrain_dataset: {type: SegmenterShapes, num_samples: 1}\n"
        "optimizer: {type: SGD}\nlr_scheduler: {type: PolynomialDecay, learning_rate: 0.1}\n"
        "model: {type: Segmenter}\n" + loss_yaml
    )
    from paddleseg.cvlibs import SegBuilder

    return SegBuilder(Config(str(p))).loss


def run_paddle(losses: dict, x, y):
    xp = paddle.to_tensor(x, stop_gradient=False)
    loss = total_loss(losses, xp, paddle.to_tensor(y))
    loss.backward()
    return float(loss), xp.grad.numpy()


def run_torch(fn, x, y):
    xt = torch.tensor(x, requires_grad=True)
    loss = fn(xt, torch.tensor(y))
    loss.backward()
    return float(loss.detach()), xt.grad.numpy()


def ce_sum_over_all(x, y):  # avg_non_ignore False: ignored pixels count in the denominator
    return TF.cross_entropy(x, y, ignore_index=IGNORE, reduction="sum") / y.numel()


def ce_top_k(x, y, frac):
    nll = TF.cross_entropy(x, y, ignore_index=IGNORE, reduction="none").flatten()
    return nll.topk(int(frac * nll.numel())).values.mean()


def dice(x, y, smooth=1.0):
    p = x.softmax(1)
    mask = (y != IGNORE).float()[:, None]
    onehot = TF.one_hot(torch.where(y == IGNORE, 0, y), C).permute(0, 3, 1, 2).float()  # [B,H,W,C] -> [B,C,H,W]
    p, onehot = (p * mask).flatten(2), (onehot * mask).flatten(2)  # [B, C, H*W]
    per = 1 - (2 * (p * onehot).sum(2) + smooth) / ((p + onehot).sum(2) + smooth + 1e-8)  # [B, C]
    return per.mean(0).sum() / C


def ohem(x, y, thresh=0.7, min_kept=20):
    p = x.softmax(1).detach()
    valid = y != IGNORE
    prob = torch.where(valid, p.gather(1, torch.where(valid, y, 0)[:, None])[:, 0], torch.ones_like(p[:, 0]) * 2)
    t = max(thresh, float(prob.flatten().sort().values[min_kept - 1]))
    kept = valid & (prob < t)
    nll = TF.cross_entropy(x, torch.where(kept, y, 0), reduction="none")
    return (nll * kept).mean() / (kept.float().mean() + 1e-5)


def lovasz(x, y):
    p = x.softmax(1).permute(0, 2, 3, 1).reshape(-1, C)  # [B, C, H, W] -> [B*H*W, C]
    yy = y.flatten()
    p, yy = p[yy != IGNORE], yy[yy != IGNORE]
    out = []
    for c in range(C):
        fg = (yy == c).float()
        if fg.sum() == 0:
            continue
        err, order = (fg - p[:, c]).abs().sort(descending=True)
        g = fg[order]
        jac = 1 - (g.sum() - g.cumsum(0)) / (g.sum() + (1 - g).cumsum(0))
        jac = torch.cat([jac[:1], jac[1:] - jac[:-1]])
        out.append((err * jac).sum())
    return torch.stack(out).mean()


def ce_weight_over_all(x, y, w):
    """avg_non_ignore False with class weights: sum(w[y] * nll) over the valid pixels, divided by the weights of
    the valid pixels plus 1 for each ignored pixel (every pixel counts in the denominator, an ignored one as 1)."""
    valid = y != IGNORE
    w = torch.tensor(w)
    den = w[y[valid]].sum() + (~valid).sum()
    return TF.cross_entropy(x, y, weight=w, ignore_index=IGNORE, reduction="sum") / den


def ohem_kth(x, y, thresh, min_kept):
    """Ohem by its definition: the pixels whose true-class probability is below max(thresh, the min_kept-th
    smallest of them) (torch.kthvalue, 1-based), cross entropy averaged over those pixels (PaddleSeg's EPS 1e-5
    added to the kept fraction)."""
    p = x.softmax(1).detach()
    valid = y != IGNORE
    prob = p.gather(1, torch.where(valid, y, 0)[:, None])[:, 0]  # [B, H, W] true-class probability
    t = max(thresh, float(torch.kthvalue(prob[valid], min_kept).values))
    kept = valid & (prob < t)
    nll = TF.cross_entropy(x, torch.where(kept, y, 0), reduction="none")[kept]
    return nll.sum() / y.numel() / (kept.sum() / y.numel() + 1e-5), int(kept.sum())


W = [0.5, 2.0, 1.0, 3.0, 0.25]
CASES = {
    "CrossEntropyLoss": ("{type: CrossEntropyLoss}", lambda x, y: TF.cross_entropy(x, y, ignore_index=IGNORE)),
    "CE weight": (
        f"{{type: CrossEntropyLoss, weight: {W}}}",
        lambda x, y: TF.cross_entropy(x, y, weight=torch.tensor(W), ignore_index=IGNORE),
    ),
    "CE avg_non_ignore False": ("{type: CrossEntropyLoss, avg_non_ignore: False}", ce_sum_over_all),
    "CE weight avg_non_ignore False": (
        f"{{type: CrossEntropyLoss, weight: {W}, avg_non_ignore: False}}",
        lambda x, y: ce_weight_over_all(x, y, W),
    ),
    "CE top_k 0.3": ("{type: CrossEntropyLoss, top_k_percent_pixels: 0.3}", lambda x, y: ce_top_k(x, y, 0.3)),
    "CE NHWC": ("{type: CrossEntropyLoss, data_format: NHWC}", None),
    "DiceLoss": ("{type: DiceLoss}", dice),
    "OhemCrossEntropyLoss": ("{type: OhemCrossEntropyLoss, min_kept: 20}", ohem),
    "LovaszSoftmaxLoss": ("{type: LovaszSoftmaxLoss}", lovasz),
    "MixedLoss CE + Dice": (
        "{type: MixedLoss, losses: [{type: DiceLoss}, {type: CrossEntropyLoss}], coef: [0.4, 0.6]}",
        lambda x, y: 0.4 * dice(x, y) + 0.6 * TF.cross_entropy(x, y, ignore_index=IGNORE),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_loss_matches_torch_reference(tmp_path, name):
    spec, ref = CASES[name]
    x, y = inputs()
    losses = build_losses(tmp_path, f"loss:\n  types: [{spec}]\n  coef: [1]\n")
    if name == "CE NHWC":
        xp = paddle.to_tensor(x.transpose(0, 2, 3, 1), stop_gradient=False)  # [B, C, H, W] -> [B, H, W, C]
        loss = total_loss(losses, xp, paddle.to_tensor(y))
        loss.backward()
        got, gg = float(loss), xp.grad.numpy().transpose(0, 3, 1, 2)  # back to [B, C, H, W]
        ref = lambda x, y: TF.cross_entropy(x, y, ignore_index=IGNORE)  # noqa: E731
    else:
        got, gg = run_paddle(losses, x, y)
    want, gw = run_torch(ref, x, y)
    d, dg = abs(got - want), np.abs(gg - gw).max()
    assert d <= 1e-6 * max(1.0, abs(want)), f"{name}: loss {got:.8f} vs torch {want:.8f}, |diff|={d:.2e}"
    assert dg <= 1e-6, f"{name}: max|grad diff|={dg:.2e}"


def test_several_losses_with_coef_sum_and_do_not_share_the_label(tmp_path):
    """types [DiceLoss, CrossEntropyLoss] with coef [2, 0.5]: DiceLoss writes 0 into ignored label pixels in place,
    so the CE after it must still see 255 there."""
    x, y = inputs(1)
    losses = build_losses(tmp_path, "loss:\n  types: [{type: DiceLoss}, {type: CrossEntropyLoss}]\n  coef: [2, 0.5]\n")
    got, gg = run_paddle(losses, x, y)
    want, gw = run_torch(lambda x, y: 2 * dice(x, y) + 0.5 * TF.cross_entropy(x, y, ignore_index=IGNORE), x, y)
    assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), f"loss {got:.8f} vs torch {want:.8f}"
    assert np.abs(gg - gw).max() <= 1e-6, f"max|grad diff|={np.abs(gg - gw).max():.2e}"


def test_cross_entropy_ignore_index_option():
    """ignore_index 3 (PaddleSeg's Config forces the train set's ignore index, so built directly by name)."""
    from paddleseg.cvlibs import manager

    x, y = inputs(2)
    y = np.where(y == IGNORE, 3, y)
    losses = {"types": [manager.LOSSES["CrossEntropyLoss"](ignore_index=3)], "coef": [1]}
    got, gg = run_paddle(losses, x, y)
    want, gw = run_torch(lambda x, y: TF.cross_entropy(x, y, ignore_index=3), x, y)
    assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), f"loss {got:.8f} vs torch {want:.8f}"
    assert np.abs(gg - gw).max() <= 1e-6, f"max|grad diff|={np.abs(gg - gw).max():.2e}"


@pytest.mark.parametrize("min_kept", [7, 20, 41])
def test_ohem_threshold_is_the_min_kept_th_probability(min_kept):
    """thresh 0 is below every pixel's probability, so the min_kept-th smallest probability decides:
    the pixels strictly below it are kept (min_kept - 1 of them, the probabilities being distinct)."""
    from paddleseg.cvlibs import manager

    x, y = inputs(3)
    want, n_kept = ohem_kth(torch.tensor(x), torch.tensor(y), 0.0, min_kept)
    assert n_kept == min_kept - 1, f"reference kept {n_kept} pixels, expected {min_kept - 1}"
    losses = {"types": [manager.LOSSES["OhemCrossEntropyLoss"](thresh=0.0, min_kept=min_kept)], "coef": [1]}
    got, gg = run_paddle(losses, x, y)
    want, gw = run_torch(lambda a, b: ohem_kth(a, b, 0.0, min_kept)[0], x, y)
    assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), f"min_kept {min_kept}: loss {got:.8f} vs {want:.8f}"
    assert np.abs(gg - gw).max() <= 1e-6, f"min_kept {min_kept}: max|grad diff|={np.abs(gg - gw).max():.2e}"

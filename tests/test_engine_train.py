"""Train a tiny model from a config: runs, exact resume, checkpoints, VisualDL tags, NaN stop."""

import os
import re

import numpy as np
import paddle
import pytest

from segmenter.engine.run import load_config, run_train
from tests.engine_helpers import assert_resume_equals_uninterrupted, weights, write_tiny_config


def test_train_eval_vdl_and_checkpoints(tmp_path):
    cfg = load_config(write_tiny_config(tmp_path))
    out = str(tmp_path / "run")
    m = run_train(
        cfg,
        out,
        seed=3,
        save_interval=2,
        keep_k=2,
        log_iters=2,
        do_eval=True,
        use_vdl=True,
        eval_kwargs={"is_slide": True, "crop_size": [32, 32], "stride": [16, 16], "flip_horizontal": True},
    )
    assert 0.0 <= m["mIoU"] <= 1.0, f"mIoU {m['mIoU']} out of [0, 1]"
    kept = sorted(d for d in os.listdir(out) if d.startswith("iter_"))
    assert kept == ["iter_4", "iter_6"], f"keep_k=2 should keep the last two checkpoints, found {kept}"
    assert os.path.isdir(os.path.join(out, "best_model")), f"no best_model in {os.listdir(out)}"
    assert not [d for d in os.listdir(out) if d.endswith((".tmp", ".old"))], f"leftovers {os.listdir(out)}"
    assert os.path.getsize(os.path.join(out, "curves.png")) > 1000, "curves.png missing or empty"
    from visualdl import LogReader

    reader = LogReader(file_path=os.path.join(out, "vdl", os.listdir(os.path.join(out, "vdl"))[0]))
    tags = set(reader.get_tags()["scalar"])
    want = {
        "Train/loss",
        "Train/lr",
        "Train/batch_cost",
        "Train/ips",
        "Evaluate/mIoU",
        "Evaluate/Acc",
        "Evaluate/Kappa",
        "Evaluate/IoU_background",
        "Evaluate/IoU_triangle",
    }  # SegmenterShapes' class names
    assert want <= tags, f"missing VisualDL tags {want - tags}; found {sorted(tags)}"
    steps = [r.id for r in reader.get_data("scalar", "Train/loss")]
    assert steps == [2, 4, 6], f"Train/loss steps {steps} != [2, 4, 6]"
    steps = [r.id for r in reader.get_data("scalar", "Evaluate/mIoU")]
    assert steps == [2, 4, 6], f"Evaluate/mIoU steps {steps} != [2, 4, 6]"


def test_resume_equals_uninterrupted(tmp_path):
    path = write_tiny_config(tmp_path)
    assert_resume_equals_uninterrupted(lambda: load_config(path, iters=6), tmp_path)


def test_resume_with_more_iters_follows_the_new_schedule_from_its_first_step(tmp_path, capsys):
    """PaddleSeg's poly decay spans --iters; resuming iter_3 of a 6-iteration run with --iters 12 must run step 4 at
    the 12-iteration schedule's lr (it ran one step at the checkpoint's stale lr of the 6-iteration one)."""
    path = write_tiny_config(tmp_path)
    run = str(tmp_path / "run")
    run_train(load_config(path, iters=6), run, seed=5, save_interval=3, log_iters=100, keep_k=5)
    capsys.readouterr()
    run_train(load_config(path, iters=12), run, seed=5, save_interval=12, log_iters=1, resume_model=f"{run}/iter_3")
    logged = {int(m[0]): float(m[1]) for m in re.findall(r"iter (\d+)/12 .*? lr ([\d.e-]+)", capsys.readouterr().out)}
    base, end, power = 0.001, 1e-5, 0.9  # tests/engine_helpers.py TINY_YAML's lr_scheduler
    for it in (4, 5, 12):
        want = (base - end) * (1 - (it - 1) / 12) ** power + end
        assert abs(logged[it] - want) <= 1e-6, f"iter {it}: lr {logged[it]} vs the 12-iteration schedule's {want:.6f}"


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path):
    from paddleseg.cvlibs import SegBuilder

    from segmenter.engine.losses import SegmenterCrossEntropyLoss
    from segmenter.engine.train import train

    b = SegBuilder(load_config(write_tiny_config(tmp_path)))
    ce, calls = SegmenterCrossEntropyLoss(), []

    def loss_fn(logits, label):  # finite for two iterations, then NaN as a diverging run would give
        calls.append(1)
        return ce(logits, label) * (float("nan") if len(calls) == 3 else 1.0)

    out = str(tmp_path / "nan")
    with pytest.raises(FloatingPointError, match="at iter 3"):
        train(b.model, b.train_dataset, b.optimizer, b.lr_scheduler, loss_fn, 6, 4, out, save_interval=2, log_iters=100)
    kept = sorted(os.listdir(out))
    assert kept == ["iter_2"], f"after the NaN stop the save_dir should hold iter_2 only, found {kept}"
    w = weights(out, "iter_2")
    bad = [k for k, v in w.items() if not np.isfinite(v).all()]
    assert not bad, f"iter_2 holds non-finite weights in {bad}"


@pytest.mark.parametrize("all_ignored", [False, True])
def test_cross_entropy_matches_numpy(all_ignored):
    from segmenter.engine.losses import SegmenterCrossEntropyLoss

    rs = np.random.RandomState(0)
    x = (rs.randn(2, 5, 7, 9) * 3).astype("float32")
    y = rs.randint(0, 5, (2, 7, 9))
    y[0, :2] = 255
    if all_ignored:
        y[:] = 255
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # [B, C, H, W]
    valid = y != 255
    nll = -np.take_along_axis(logp, np.where(valid, y, 0)[:, None], axis=1)[:, 0]  # [B, 1, H, W] -> [B, H, W]
    ref = (nll * valid).sum() / max(valid.sum(), 1)
    got = float(SegmenterCrossEntropyLoss()(paddle.to_tensor(x), paddle.to_tensor(y)))
    assert abs(got - ref) <= 1e-5 * max(abs(ref), 1.0), (
        f"loss {got:.7f} vs numpy {ref:.7f}: |diff|={abs(got - ref):.2e}"
    )

"""Static-graph training (`to_static_training: True`, as in PaddleSeg): the loss curve of dygraph training, and
exact resume."""

import os

import numpy as np

from segmenter.engine.run import load_config, run_train
from segmenter.engine.run import test_kwargs as eval_options  # aliased: pytest would collect test_kwargs
from tests.engine_helpers import assert_resume_equals_uninterrupted, write_tiny_config

ITERS = 20


def losses(save_dir: str) -> np.ndarray:
    """Train/loss of every iteration, as VisualDL logged it."""
    from visualdl import LogReader

    vdl = os.path.join(save_dir, "vdl")
    reader = LogReader(file_path=os.path.join(vdl, os.listdir(vdl)[0]))
    return np.array([r.value for r in reader.get_data("scalar", "Train/loss")], np.float64)


def config(tmp_path, to_static: bool, iters: int = ITERS, stochastic: bool = True):
    """The tiny config, with the top-level key PaddleSeg users write (through the config checks)."""
    path = write_tiny_config(tmp_path)
    with open(path, "a") as f:
        f.write(f"to_static_training: {to_static}\n")
    cfg = load_config(path, iters=iters)
    assert cfg.dic["to_static_training"] is to_static
    if not stochastic:
        cfg.dic["model"]["backbone"].update(drop_rate=0.0, drop_path_rate=0.0)
    return cfg


def test_static_loss_curve_equals_dygraph(tmp_path):
    """20 iterations of the tiny model without dropout and drop path (the static graph draws its masks in another
    order than dygraph: the same distribution, other masks)."""
    curves = {}
    for to_static in (False, True):
        out = str(tmp_path / f"static{to_static}")
        run_train(
            config(tmp_path, to_static, stochastic=False), out, seed=7, save_interval=ITERS, log_iters=1, use_vdl=True
        )
        curves[to_static] = losses(out)
    dy, st = curves[False], curves[True]
    assert len(dy) == len(st) == ITERS, f"{len(dy)} / {len(st)} logged losses"
    rel = float(np.max(np.abs(st - dy) / np.abs(dy)))
    assert rel <= 1e-5, f"static vs dygraph loss, max relative diff {rel:.2e} (dygraph {dy[:3]}..., static {st[:3]}...)"
    assert dy[0] - dy[-1] > 1e-3 * dy[0], f"the loss did not move ({dy[0]:.4f} -> {dy[-1]:.4f}): a vacuous comparison"


def test_static_training_resumes_exactly(tmp_path):
    assert_resume_equals_uninterrupted(lambda: config(tmp_path, True, 6), tmp_path, " (static graph)")


def test_static_training_evaluates_through_the_default_path(tmp_path, monkeypatch):
    """Evaluation during static training through the compiled path (the default; its small images compile here)
    exports the dygraph forward and hands the static one back: training goes on after the evaluation at
    iteration 2 and saves iteration 4."""
    from segmenter.engine import compiled

    monkeypatch.setattr(compiled, "MIN_TOKENS", 0)
    out = str(tmp_path / "run")
    cfg = config(tmp_path, True, 4)
    fast = eval_options(cfg, {})
    from segmenter import deploy

    exported, real = [], deploy.export
    monkeypatch.setattr(deploy, "export", lambda *a, **k: exported.append(1) or real(*a, **k))
    m = run_train(cfg, out, seed=3, save_interval=2, log_iters=100, do_eval=True, eval_kwargs=fast)
    assert 0.0 <= m["mIoU"] <= 1.0 and os.path.isdir(os.path.join(out, "iter_4")), f"mIoU {m.get('mIoU')}"
    assert exported, "the evaluations never compiled a size: the test would not reach the export"

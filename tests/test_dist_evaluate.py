"""A two-rank evaluation (tools/val.py's runner under paddle.distributed.launch) gives exactly the single-process
confusion matrices (each rank sees half the images)."""

import os
import subprocess

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import SegBuilder

from segmenter.engine.evaluate import evaluate
from segmenter.engine.run import load_config
from tests.engine_helpers import ROOT, launch_command, launch_env, write_tiny_config


@pytest.mark.slow  # two launched processes (~6-9 s)
def test_two_rank_evaluation_equals_single_process(tmp_path):
    cfg = write_tiny_config(tmp_path)  # 4 val images: 2 per rank
    b = SegBuilder(load_config(cfg))
    weights = str(tmp_path / "w.pdparams")
    paddle.save(b.model.state_dict(), weights)
    one = evaluate(
        b.model,
        b.val_dataset,
        4,
        is_slide=True,
        crop_size=[32, 32],
        stride=[16, 16],
        flip_horizontal=True,
        progress=False,
    )
    script = os.path.join(ROOT, "tests", "dist_eval_script.py")
    cmd = launch_command(script, [cfg, weights, tmp_path / "cm.npy"], str(tmp_path / "log"), nproc=2)
    r = subprocess.run(cmd, cwd=ROOT, env=launch_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"launch exited {r.returncode}:\n{r.stderr[-2000:]}"
    two = np.load(tmp_path / "cm.npy")
    for name, a, b2 in (("slice + flip", one["confusion"], two[0]), ("slice", one["plain"]["confusion"], two[1])):
        assert (a == b2).all(), (
            f"{name}: 2-rank confusion sums {b2.sum()} px, single {a.sum()} px; differ at "
            f"{np.argwhere(a != b2)[:3].tolist()}"
        )

"""Two CPU processes under paddle.distributed.launch train with data parallel and end with equal weights."""

import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from tests.engine_helpers import write_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # two launched processes (~6-9 s)
def test_two_process_data_parallel(tmp_path):
    cfg = write_tiny_config(tmp_path)
    out = str(tmp_path / "dp")
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(tmp_path / "log"),
        os.path.join(ROOT, "tools", "train.py"),
        "--config",
        cfg,
        "--iters",
        "3",
        "--save_dir",
        out,
        "--save_interval",
        "3",
        "--log_iters",
        "1",
        "--do_eval",
        "--save_all_ranks",
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    logs = "".join(open(os.path.join(tmp_path, "log", f)).read()[-2000:] for f in sorted(os.listdir(tmp_path / "log")))
    assert r.returncode == 0, f"launch exited {r.returncode}:\n{r.stderr[-2000:]}\n{logs}"
    w0 = paddle.load(os.path.join(out, "rank_0.pdparams"))
    w1 = paddle.load(os.path.join(out, "rank_1.pdparams"))
    diff = max(float(np.abs(w0[k].numpy() - w1[k].numpy()).max()) for k in w0)
    assert diff <= 1e-6, f"ranks differ after data-parallel training: max|diff|={diff:.2e}"
    init_dir = os.listdir(out)
    assert "iter_3" in init_dir, f"rank 0 should save iter_3; save_dir holds {init_dir}"
    assert "[EVAL] iter 3" in logs, f"rank 0 printed no evaluation:\n{logs}"

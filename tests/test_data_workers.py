"""Data-loading workers never inherit the trainer's threads. A worker forked while another thread of the trainer
holds a lock (a math library's pool, the data pipeline, an allocator) waits for that lock forever: training with
--num_workers 2 hung in 2 of 7 runs after a few other tests in one process. The workers are started by a fork
server, so a lock held in the trainer is free in them. This test holds one on purpose, in a live thread, after the
same warm-up (evaluation and a training without workers), and trains with 2 workers several times in that process.
"""

import os
import subprocess
import sys
import threading
import time

import pytest

from tests import layouts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD = threading.Lock()  # held by a thread of the trainer while the workers start
REPEATS = 3


class TakesLock:
    """A PaddleSeg transform step that takes HELD, as library code in a worker takes its library's locks."""

    def __call__(self, data: dict) -> dict:
        with HELD:
            return data


SCRIPT = """
import sys, threading, time
from paddleseg.cvlibs import SegBuilder
import segmenter
from segmenter.engine.evaluate import evaluate
from segmenter.engine.run import load_config
from segmenter.engine.train import train
from tests.test_data_workers import HELD, TakesLock

cfg, out, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = SegBuilder(load_config(cfg))
b.train_dataset.transforms.transforms.insert(0, TakesLock())
loss = lambda x, y: b.loss["types"][0](x, y)
evaluate(b.model, b.val_dataset, 6, progress=False)  # warm-up: Paddle's and OpenCV's threads are running
train(b.model, b.train_dataset, b.optimizer, b.lr_scheduler, loss, 2, 2, out + "/w0", log_iters=100)
threading.Thread(target=lambda: (HELD.acquire(), time.sleep(3600)), daemon=True).start()
time.sleep(0.1)
for r in range(repeats):
    train(b.model, b.train_dataset, b.optimizer, b.lr_scheduler, loss, 4, 2, f"{out}/w2_{r}", num_workers=2,
          log_iters=100, save_interval=100)
    print("trained with 2 workers", r + 1, flush=True)
"""


@pytest.mark.slow
def test_workers_do_not_inherit_a_held_lock(tmp_path):
    from tests.test_data_errors import dataset_yaml

    root = layouts.file_list(str(tmp_path), n_train=4, n_val=2)
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(dataset_yaml(root))
    t = time.time()
    try:
        r = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(cfg), str(tmp_path / "out"), str(REPEATS)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
            capture_output=True,
            text=True,
            timeout=150,
        )
    except subprocess.TimeoutExpired as e:
        done = (e.stdout or b"").decode().count("trained with 2 workers")
        pytest.fail(
            f"training with 2 workers hung after {done}/{REPEATS} runs ({time.time() - t:.0f} s): a worker "
            "waits on a lock the trainer held when it started"
        )
    assert r.returncode == 0 and r.stdout.count("trained with 2 workers") == REPEATS, (
        f"exit {r.returncode}\n{r.stdout[-1000:]}\n{r.stderr[-3000:]}"
    )

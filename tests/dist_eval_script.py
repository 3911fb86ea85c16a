"""Run by tests/test_dist_evaluate.py under paddle.distributed.launch: evaluate a saved model on 2 ranks through
tools/val.py's runner (run_val, which sets up the process group) and let rank 0 write the summed confusion
matrices."""

import sys

import numpy as np
import paddle.distributed as dist

import segmenter  # noqa: F401
from segmenter.engine.run import load_config, run_val

cfg_path, weights, out = sys.argv[1:4]
m = run_val(load_config(cfg_path), weights, is_slide=True, crop_size=[32, 32], stride=[16, 16], flip_horizontal=True)
if dist.get_rank() == 0:
    np.save(out, np.stack([m["confusion"], m["plain"]["confusion"]]))

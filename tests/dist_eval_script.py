"""Run by tests/test_dist_evaluate.py under paddle.distributed.launch: evaluate a saved model on 2 ranks and let
rank 0 write the summed confusion matrix."""

import sys

import numpy as np
import paddle
import paddle.distributed as dist
from paddleseg.cvlibs import SegBuilder

import segmenter  # noqa: F401
from segmenter.engine.evaluate import evaluate
from segmenter.engine.run import load_config

cfg_path, weights, out = sys.argv[1:4]
dist.init_parallel_env()
b = SegBuilder(load_config(cfg_path))
model = b.model
model.set_state_dict(paddle.load(weights))
m = evaluate(
    model, b.val_dataset, 4, is_slide=True, crop_size=[32, 32], stride=[16, 16], flip_horizontal=True, progress=False
)
if dist.get_rank() == 0:
    np.save(out, np.stack([m["confusion"], m["plain"]["confusion"]]))

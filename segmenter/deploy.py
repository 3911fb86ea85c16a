"""Deployment path: export a Segmenter for one fixed input size and run it through `paddle.inference`.

A fixed size keeps the exported graph free of the run-time position-embedding resampling (bicubic
interpolation of a data-dependent size), so the inference passes can fuse the whole network.
"""
import os
from typing import List, Optional, Sequence

import numpy as np
import paddle
import paddle.inference as paddle_infer
import paddle.nn as nn

from segmenter.runtime import default_threads


def export(model: nn.Layer, path_prefix: str, input_size: Sequence[int], batch_size: Optional[int] = 1) -> str:
    """Trace `model` (returning `[logits]`) for inputs [batch_size, C, H, W] and save it with `paddle.jit.save`.

    Args:
        model: a Segmenter (or any layer taking [B, C, H, W] and returning a list of tensors).
        path_prefix: output prefix; files `<prefix>.json`/`.pdmodel` and `<prefix>.pdiparams` are written.
        input_size: (H, W) of the exported input.
        batch_size: fixed batch, or None for a variable batch (sliding windows in batches).
    Returns the prefix.
    """
    if len(input_size) != 2:
        raise ValueError(f"export: input_size must be (H, W); got {list(input_size)}.")
    in_channels = model.backbone.in_channels if hasattr(model, "backbone") else 3
    spec = paddle.static.InputSpec([batch_size, in_channels, int(input_size[0]), int(input_size[1])],
                                   dtype="float32", name="x")
    was_training = model.training
    model.eval()
    static_model = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)
    os.makedirs(os.path.dirname(os.path.abspath(path_prefix)), exist_ok=True)
    paddle.jit.save(static_model, path_prefix)
    if was_training:
        model.train()
    return path_prefix


def _model_file(path_prefix: str) -> str:
    """Paddle 3 writes `<prefix>.json` (PIR) and older versions `<prefix>.pdmodel`; return the one present."""
    for ext in (".json", ".pdmodel"):
        if os.path.exists(path_prefix + ext):
            return path_prefix + ext
    raise FileNotFoundError(f"No exported model at {path_prefix}.json or {path_prefix}.pdmodel; "
                            f"run tools/export.py --save {path_prefix} first.")


class Predictor:
    """A `paddle.inference` predictor with a numpy in, numpy out `__call__`."""

    def __init__(self, path_prefix: str, num_threads: Optional[int] = None, use_onednn: bool = False):
        config = paddle_infer.Config(_model_file(path_prefix), path_prefix + ".pdiparams")
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(default_threads() if num_threads is None else int(num_threads))
        if use_onednn:
            config.enable_onednn()
        else:
            config.disable_onednn()
        config.switch_ir_optim(True)
        config.disable_glog_info()
        self.use_onednn = use_onednn
        self.predictor = paddle_infer.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.outputs = [self.predictor.get_output_handle(n) for n in self.predictor.get_output_names()]

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        """x float32 [B, C, H, W] -> [logits [B, n_cls, H, W]] as numpy arrays."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(x)
        self.predictor.run()
        return [o.copy_to_cpu() for o in self.outputs]


def create_predictor(path_prefix: str, num_threads: Optional[int] = None, use_onednn: bool = False) -> Predictor:
    """Load an export of `export()` for CPU inference with `num_threads` (default: all cores).

    oneDNN is off by default: on paddle 3.3.1 the PIR oneDNN executor fails on this graph with
    "ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<DoubleAttribute>" (from interpolate).
    """
    return Predictor(path_prefix, num_threads, use_onednn)

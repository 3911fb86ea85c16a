"""The compiled inference path (opt-in): the model exported once per input size, run by a `paddle.inference`
predictor.

Evaluation (whole, slide, flip, multi-scale), tools/predict.py and the Inferencer call `model(x)[0]` through
`inference_model(model)`. A `CompiledModel` traces the eval-mode model (`segmenter.deploy.export`, batch left
free) the second time it sees an input size [C, H, W] and keeps that predictor (oneDNN where paddle accepts the
graph) for every later call at that size: slide windows share one size, so a slide evaluation compiles once; a
size seen once (whole-image inference over images of many sizes) never pays the export. Each compiled size is
checked once on the input that compiled it against the dygraph model (oneDNN, else MKL, else dygraph). Results
equal the dygraph model's within 1e-5 (tests/test_compiled.py); measured speed in docs/benchmarks.md.

It is opt-in: `test_config: {fast_path: true}` in the YAML, `SEGMENTER_FAST_PATH=1` in the environment, or
`Inferencer(..., fast_path=True)`. It is not the default because its first call at a size (export plus the check)
can take several GB more than the dygraph forward: 7 GB for a whole 2048x1024 image, and a hybrid R50 ViT at
ADE20K's val size went past 9.8 GB where the dygraph model peaks at 3.7 GB. The weights are read at compile
time: build a new CompiledModel after changing them (evaluate() builds one per call, so evaluation during training
sees the current weights).
"""

import os
import tempfile
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn

COMPILE_AFTER = 2  # calls at one size before it is compiled (~2-5 s for ViT-S: about 5 forwards at 512)
MAX_SIZES = 4  # predictors kept per model; each holds its own copy of the weights
CHECK_TOL = 1e-4  # a compiled size is checked once against dygraph: max|diff| <= CHECK_TOL * (1 + max|logits|)


def fast_path_enabled(flag: Optional[bool] = None) -> bool:
    """The fast path runs when `flag` is True, or `flag` is None and the environment says SEGMENTER_FAST_PATH=1; it
    needs a CPU build (on a GPU the dygraph model runs, see docs/benchmarks.md)."""
    if flag is False or (flag is None and os.environ.get("SEGMENTER_FAST_PATH", "0") != "1"):
        return False
    return paddle.get_device() == "cpu"


class CompiledModel:
    """Callable like the model in eval mode: x [B, C, H, W] -> [logits [B, n_cls, H, W]], each input size through
    its own exported predictor once compiled, through the dygraph model before that (or if export fails)."""

    def __init__(
        self,
        model: nn.Layer,
        compile_after: int = COMPILE_AFTER,
        max_sizes: int = MAX_SIZES,
        num_threads: Optional[int] = None,
    ):
        self.model, self.num_threads = model, num_threads
        self.compile_after, self.max_sizes = compile_after, max_sizes
        self.seen: Dict[Tuple[int, ...], int] = {}
        self.predictors: Dict[Tuple[int, ...], object] = {}
        self.failed: Optional[str] = None  # why the model could not be exported; then dygraph throughout

    def __call__(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        key = tuple(x.shape[1:])
        pred = self.predictors.get(key)
        if pred is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.failed is None and self.seen[key] >= self.compile_after and len(self.predictors) < self.max_sizes:
                pred = self._compile(key, x)
        if pred is None:
            return self.model(x)
        return [paddle.to_tensor(o) for o in pred(x.numpy())]

    def _compile(self, key: Tuple[int, ...], x: paddle.Tensor):
        """Export at this size and check the predictor on x against the dygraph model: oneDNN first, MKL if
        oneDNN's result is off (paddle 3.3.1's oneDNN passes broke UPerNetViT's logits), None if both are."""
        from segmenter import deploy

        name = f"{type(self.model).__name__} at {list(key)}"
        try:
            with tempfile.TemporaryDirectory(prefix="segmenter_fast_") as tmp:
                prefix = deploy.export(self.model, os.path.join(tmp, "model"), key[1:], batch_size=None)
                with paddle.no_grad():
                    ref = self.model(x)[0].numpy()
                for use_onednn in (None, False):  # the predictor reads the files: they may go once it exists
                    pred = deploy.create_predictor(prefix, self.num_threads, use_onednn)
                    diff = float(np.abs(pred(x.numpy())[0] - ref).max())
                    if diff <= CHECK_TOL * (1.0 + float(np.abs(ref).max())):
                        self.predictors[key] = pred
                        return pred
                    warnings.warn(
                        f"fast path: the {'oneDNN' if pred.use_onednn else 'MKL'} predictor of {name} "
                        f"is off by max|diff| {diff:.2e} from the dygraph model; "
                        f"{'trying MKL' if pred.use_onednn else 'running the dygraph model'}.",
                        stacklevel=2,
                    )
                    if not pred.use_onednn:
                        break
            self.failed = f"predictor off by {diff:.2e}"
        except Exception as e:  # noqa: BLE001 (a model paddle cannot trace still runs, in dygraph)
            self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200] if str(e).strip() else ''}"
            warnings.warn(
                f"fast path: paddle could not export {name} ({self.failed}); running the dygraph model "
                f"(set test_config.fast_path: false to skip the attempt).",
                stacklevel=2,
            )
        return None


def inference_model(model: nn.Layer, fast_path: Optional[bool] = None):
    """`model` wrapped in a CompiledModel when the fast path is on (see fast_path_enabled), else `model` itself.
    The model must already be in eval mode."""
    return CompiledModel(model) if fast_path_enabled(fast_path) else model

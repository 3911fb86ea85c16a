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
`Inferencer(..., fast_path=True)`. Its first call at a size (the dygraph reference, the export, the predictor and
the check) adds 1.9-3.2x the resident memory the dygraph forward adds, and later calls as much: the predictor
holds its own copy of the weights and keeps more activations alive in its run than the dygraph forward
(`tools/benchmark.py compile_memory`, docs/benchmarks.md). Sizes above MAX_TOKENS tokens per image (a whole
2048x1024 image: 8192) stay in dygraph. (The hybrid R50 ViT's 9.8 GB at ADE20K's val size was an export bug, a
position embedding baked for 262144 tokens, fixed in deploy.fixed_pos_embed.) The weights are read at compile
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

from segmenter.runtime import release_freed_memory

COMPILE_AFTER = 2  # calls at one size before it is compiled (~2-5 s for ViT-S: about 5 forwards at 512)
MAX_SIZES = 4  # predictors kept per model; each holds its own copy of the weights
# Sizes of more tokens per image stay in dygraph (whose attention runs in query chunks past 2048 tokens): the
# predictor's run holds about twice the dygraph forward's memory (no buffer reuse: paddle 3.3.1's
# enable_memory_optim fails on PIR programs), +5.9 GB against +2.6 GB for a whole 2048x1024 image (8192 tokens).
MAX_TOKENS = 4096  # a 1024x1024 slide window at patch 16
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
        max_tokens: int = MAX_TOKENS,
    ):
        self.model, self.num_threads, self.max_tokens = model, num_threads, max_tokens
        self.compile_after, self.max_sizes = compile_after, max_sizes
        self.seen: Dict[Tuple[int, ...], int] = {}
        self.predictors: Dict[Tuple[int, ...], object] = {}
        self.failed: Optional[str] = None  # why the model could not be exported; then dygraph throughout

    def __call__(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        key = tuple(x.shape[1:])
        pred = self.predictors.get(key)
        if pred is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            if (
                self.failed is None
                and self.seen[key] >= self.compile_after
                and len(self.predictors) < self.max_sizes
                and self.tokens(key) <= self.max_tokens
            ):
                out = self._compile(key, x)
                if out is not None:  # the dygraph reference the compiled size was checked against
                    return out
            return self.model(x)
        out = pred(x.numpy())
        pred.release()
        return [as_tensor(o) for o in out]

    def tokens(self, key: Tuple[int, ...]) -> int:
        """Tokens per image at input size key [C, H, W] (the backbone's pixels per token, else 16)."""
        s = int(getattr(getattr(self.model, "backbone", None), "stride", 16))
        return -(-int(key[1]) // s) * -(-int(key[2]) // s)

    def _compile(self, key: Tuple[int, ...], x: paddle.Tensor) -> Optional[List[np.ndarray]]:
        """Export at this size and check the predictor on x against the dygraph model: oneDNN first, MKL if
        oneDNN's result is off (paddle 3.3.1's oneDNN kernels got UPerNetViT's resizes wrong until they were
        written around, models.segmenter.separable_product), None if both are. Returns the dygraph model's
        outputs on x (the check's reference), or None when the size is not compiled.

        Memory (docs/benchmarks.md, "The compiled path's memory"): the dygraph reference runs first and only its
        logits stay while the export and each predictor run; the predictor's activations are released after each
        run (Predictor.release) and the heap trimmed between the steps."""
        from segmenter import deploy

        name = f"{type(self.model).__name__} at {list(key)}"
        try:
            with paddle.no_grad():
                ref_out = self.model(x)
            ref = as_array(ref_out[0])
            release_freed_memory()
            with tempfile.TemporaryDirectory(prefix="segmenter_fast_") as tmp:
                prefix = deploy.export(self.model, os.path.join(tmp, "model"), key[1:], batch_size=None)
                release_freed_memory()
                for use_onednn in (None, False):  # the predictor reads the files: they may go once it exists
                    pred = deploy.create_predictor(prefix, self.num_threads, use_onednn)
                    out = pred(x.numpy())
                    pred.release()
                    diff = max_abs_diff(out[0], ref)
                    if diff <= CHECK_TOL * (1.0 + max_abs(ref)):
                        self.predictors[key] = pred
                        return ref_out
                    warnings.warn(
                        f"fast path: the {'oneDNN' if pred.use_onednn else 'MKL'} predictor of {name} "
                        f"is off by max|diff| {diff:.2e} from the dygraph model; "
                        f"{'trying MKL' if pred.use_onednn else 'running the dygraph model'}.",
                        stacklevel=3,
                    )
                    del pred, out
                    release_freed_memory()
                    if use_onednn is False:
                        break
            self.failed = f"predictor off by {diff:.2e}"
        except Exception as e:  # noqa: BLE001 (a model paddle cannot trace still runs, in dygraph)
            self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200] if str(e).strip() else ''}"
            warnings.warn(
                f"fast path: paddle could not export {name} ({self.failed}); running the dygraph model "
                f"(set test_config.fast_path: false to skip the attempt).",
                stacklevel=3,
            )
        return None


def as_tensor(a: np.ndarray) -> paddle.Tensor:
    """A paddle tensor on the array's memory (DLPack, no copy: a whole image's logits are 1.3 GB), else a copy."""
    try:
        return paddle.utils.dlpack.from_dlpack(np.ascontiguousarray(a))
    except Exception:  # noqa: BLE001 (an older numpy or paddle without DLPack)
        return paddle.to_tensor(a)


def as_array(t: paddle.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (DLPack, no copy), else a copy; read it, do not keep it past the tensor."""
    try:
        return np.from_dlpack(t)
    except Exception:  # noqa: BLE001
        return t.numpy()


CHUNK = 1 << 22  # elements compared at a time: no full-size temporaries next to two full logits


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    return max((float(np.abs(a[i : i + CHUNK] - b[i : i + CHUNK]).max()) for i in range(0, a.size, CHUNK)), default=0.0)


def max_abs(a: np.ndarray) -> float:
    a = a.reshape(-1)
    return max((float(np.abs(a[i : i + CHUNK]).max()) for i in range(0, a.size, CHUNK)), default=0.0)


def inference_model(model: nn.Layer, fast_path: Optional[bool] = None):
    """`model` wrapped in a CompiledModel when the fast path is on (see fast_path_enabled), else `model` itself.
    The model must already be in eval mode."""
    return CompiledModel(model) if fast_path_enabled(fast_path) else model

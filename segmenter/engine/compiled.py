"""The compiled inference path, the default on a CPU: the model exported once per input size and run by a
`paddle.inference` predictor.

Evaluation (whole, slide, flip, multi-scale), tools/predict.py and the Inferencer call `model(x)[0]` through
`inference_model(model)`. A `CompiledModel` traces the eval-mode model (`segmenter.deploy.export`, batch left
free, attention as paddle's fused CPU kernel where the CPU has it) the second time it sees an input size
[C, H, W] and keeps that predictor (oneDNN where paddle accepts the graph) for every later call at that size: slide
windows share one size, so a slide evaluation compiles once; a size seen once (whole-image inference over images of
many sizes) never pays the export (2-5 s for ViT-S). Each compiled size is checked once on the input that compiled
it against the dygraph model (oneDNN, else MKL, else dygraph). Results equal the dygraph model's within 1e-5
(tests/test_compiled.py); measured speed in docs/benchmarks.md.

Which sizes compile: from MIN_TOKENS to MAX_TOKENS tokens per image, and only while the memory is there. Below
MIN_TOKENS the predictor gains little over the dygraph model (256x256: none) and would not earn its export back;
above MAX_TOKENS (a whole 2048x1024 image: 8192) its run would hold about twice the dygraph forward's memory. The
predictor holds its own copy of the weights and keeps its activations alive through its run (paddle 3.3.1's
enable_memory_optim fails on PIR programs), 1.9-3.4x the resident memory the dygraph forward adds
(`tools/benchmark.py compile_memory`), so a size compiles only if MEMORY_FACTOR times what its dygraph forward
added, plus the weights and a margin, is available (runtime.available_mb: MemAvailable, or a container's limit);
else it stays in dygraph, with a warning.

bf16 (precision="bf16": `--precision bf16`, `test_config: {precision: bf16}`, `Inferencer(..., precision="bf16")`)
lives here: paddle has no bf16 CPU kernels in dygraph (its autocast is a no-op on the CPU, conv2d has no bf16
kernel), so bf16 is the predictor's, exported with its attention in oneDNN's bf16 kernels (layers.bf16_graph) and run
with oneDNN's bf16 passes. With bf16 every size compiles on first sight, down to one token: the fp32 thresholds
(COMPILE_AFTER, MIN_TOKENS) weigh the export against a dygraph forward of the same precision, and in bf16 the
dygraph model is no alternative. A size still runs the fp32 dygraph model, with one warning saying why, where the
predictor cannot take it: above MAX_TOKENS, past MAX_SIZES sizes, without the memory, or when the export fails.
Each compiled size is checked on its first input against the fp32 dygraph model within BF16_CHECK_TOL.

Turn it off with `test_config: {fast_path: false}` in the YAML, `--no_fast_path` on tools/val.py and
tools/predict.py, `SEGMENTER_FAST_PATH=0` in the environment, or `Inferencer(..., fast_path=False)`. On a GPU build
the dygraph model runs (the predictor here is a CPU one). The weights are read at compile time: build a new
CompiledModel after changing them (evaluate() builds one per call, so evaluation during training sees the current
weights).
"""

import os
import tempfile
import warnings
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from segmenter.runtime import PeakRSS, available_mb, check_precision, release_freed_memory

COMPILE_AFTER = 2  # calls at one size before it is compiled (~2-5 s for ViT-S: about 5 forwards at 512)
MAX_SIZES = 4  # predictors kept per model; each holds its own copy of the weights
# Input sizes counted towards COMPILE_AFTER: past this many the oldest count is forgotten (a size seen again starts
# from one), so a server fed every size there is (the demo page) keeps a bounded table.
MAX_SEEN = 4096
# Fewer tokens per image stay in dygraph: ViT-S at 256x256 (256 tokens) ran as fast in dygraph as through the
# predictor, at 384x384 (576) 10% slower, at 512x512 (1024) 1.3-2x slower (docs/benchmarks.md).
MIN_TOKENS = 1024  # a 512x512 window at patch 16
# More tokens per image stay in dygraph (whose attention is the fused kernel or query chunks, linear memory): the
# predictor's run holds about twice the dygraph forward's memory, +5.9 GB against +2.6 GB for a whole 2048x1024
# image (8192 tokens).
MAX_TOKENS = 4096  # a 1024x1024 slide window at patch 16
MEMORY_FACTOR = 3.5  # the predictor's run added up to 3.4x the dygraph forward's memory (R50+ViT-B at 512)
MEMORY_MARGIN_MB = 512.0  # left free beyond that estimate
CHECK_TOL = 1e-4  # a compiled size is checked once against dygraph: max|diff| <= CHECK_TOL * (1 + max|logits|)
# The bf16 predictor's check. bf16 keeps 8 significant bits, so rounding a value to it moves it by at most
# u = 2^-8 of itself; oneDNN rounds both operands of every matmul, fc and conv to bf16 and accumulates in fp32, so each
# product moves by at most ~2u of the sum of |terms| it adds up. A ViT's logits are the end of G such products in a
# row (patch embedding, 6 per block, the linear head, the upsampling's 2: G = 76 for ViT-S/16's 12 blocks, 148 for
# ViT-L's 24), whose independent roundings add up as a random walk, about 2u * sqrt(G) of the logits' scale (0.07 for
# ViT-S, 0.10 for ViT-L; tests/test_precision.py holds a trained model to it). Measured: ViT-S/16 at 512, random
# weights, max|diff| 0.017 on logits up to 1.7. This check, 2.5x the ViT-L figure, stops a broken kernel (paddle
# 3.3.1's oneDNN matmul bug put UPerNet's logits off by ~8, docs/benchmarks.md), not rounding.
BF16_CHECK_TOL = 0.25


def fast_path_enabled(flag: Optional[bool] = None) -> bool:
    """The fast path runs unless `flag` is False, or `flag` is None and the environment says SEGMENTER_FAST_PATH=0;
    it needs a CPU build (on a GPU the dygraph model runs, see docs/benchmarks.md)."""
    if flag is False or (flag is None and os.environ.get("SEGMENTER_FAST_PATH", "1") == "0"):
        return False
    return paddle.get_device() == "cpu"


class CompiledModel:
    """Callable like the model in eval mode: x [B, C, H, W] -> [logits [B, n_cls, H, W]], each input size through
    its own exported predictor once compiled, through the dygraph model before that (or if export fails, or the
    size is outside [min_tokens, max_tokens], or the memory is not there). None: the module's constants, or with
    precision "bf16" compile_after 1 and min_tokens 0 (see the module's doc)."""

    def __init__(
        self,
        model: nn.Layer,
        compile_after: Optional[int] = None,
        max_sizes: Optional[int] = None,
        num_threads: Optional[int] = None,
        max_tokens: Optional[int] = None,
        min_tokens: Optional[int] = None,
        precision: str = "fp32",
    ):
        self.model, self.num_threads, self.precision = model, num_threads, precision
        bf16 = precision == "bf16"
        self.compile_after = (1 if bf16 else COMPILE_AFTER) if compile_after is None else compile_after
        self.max_sizes = MAX_SIZES if max_sizes is None else max_sizes
        self.max_tokens = MAX_TOKENS if max_tokens is None else max_tokens
        self.min_tokens = (0 if bf16 else MIN_TOKENS) if min_tokens is None else min_tokens
        self.seen: Dict[Tuple[int, ...], int] = {}
        self.predictors: Dict[Tuple[int, ...], object] = {}
        self.skipped: Set[Tuple[int, ...]] = set()  # sizes left in dygraph for want of memory
        self.failed: Optional[str] = None  # why the model could not be exported; then dygraph throughout
        self.told: Set[str] = set()  # the bf16 warnings given (once each)

    def __call__(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        key = tuple(x.shape[1:])
        pred = self.predictors.get(key)
        if pred is not None:
            out = pred.run_tensors(x)
            pred.release()
            return out
        self.seen[key] = self.seen.get(key, 0) + 1
        if len(self.seen) > MAX_SEEN:
            del self.seen[next(iter(self.seen))]  # the oldest size first seen (dicts keep insertion order)
        if self.worth_compiling(key):
            return self._compile(key, x)
        if self.precision != "fp32":
            self.warn_dygraph(key)
        return self.model(x)

    def warn_dygraph(self, key: Tuple[int, ...]) -> None:
        """Say once why a size runs the fp32 dygraph model although a lower precision was asked."""
        if self.failed is not None or key in self.skipped:
            return  # _compile said why
        name = f"{type(self.model).__name__} at {list(key)}"
        if self.tokens(key) > self.max_tokens:
            why, once = f"its {self.tokens(key)} tokens are more than the predictor takes ({self.max_tokens})", key
        elif len(self.predictors) >= self.max_sizes:
            why, once = f"{self.max_sizes} input sizes are compiled already (MAX_SIZES)", "sizes"
        else:
            return  # not yet seen compile_after times: compiles on a later call
        if str(once) not in self.told:
            self.told.add(str(once))
            warnings.warn(
                f"{self.precision}: {name} runs the fp32 dygraph model: {why}; slide windows of one size keep every "
                f"forward in {self.precision}.",
                stacklevel=3,
            )

    def worth_compiling(self, key: Tuple[int, ...]) -> bool:
        return (
            self.failed is None
            and key not in self.skipped
            and self.seen[key] >= self.compile_after
            and len(self.predictors) < self.max_sizes
            and self.min_tokens <= self.tokens(key) <= self.max_tokens
        )

    def tokens(self, key: Tuple[int, ...]) -> int:
        """Tokens per image at input size key [C, H, W] (the backbone's pixels per token, else 16)."""
        s = int(getattr(getattr(self.model, "backbone", None), "stride", 16))
        return -(-int(key[1]) // s) * -(-int(key[2]) // s)

    def memory_needed_mb(self, forward_mb: float) -> float:
        """What compiling is allowed to assume it will take, given the dygraph forward added `forward_mb`."""
        weights_mb = sum(int(np.prod(p.shape)) * 4 for p in self.model.parameters()) / 2**20
        return MEMORY_FACTOR * forward_mb + weights_mb + MEMORY_MARGIN_MB

    def _compile(self, key: Tuple[int, ...], x: paddle.Tensor) -> List[paddle.Tensor]:
        """Run the dygraph model on x, then export at this size and check the predictor on x against that result:
        oneDNN first, MKL if oneDNN's is off (paddle 3.3.1's oneDNN kernels got UPerNetViT's resizes wrong until
        they were written around, models.segmenter.separable_product), neither if both are. Returns the dygraph
        model's outputs on x either way.

        Memory (docs/benchmarks.md, "The compiled path's memory"): the size is left in dygraph when less than
        memory_needed_mb is available; the dygraph reference runs first and only its logits stay while the export
        and each predictor run; the predictor's activations are released after each run (Predictor.release) and
        the heap trimmed between the steps."""
        from segmenter import deploy

        bf16 = self.precision == "bf16"
        name = f"{type(self.model).__name__} at {list(key)}" + (" in bf16" if bf16 else "")
        with PeakRSS() as forward, paddle.no_grad():
            ref_out = self.model(x)
        room, need = available_mb(), self.memory_needed_mb(forward.added_mb)
        if room is not None and room < need:
            self.skipped.add(key)
            warnings.warn(
                f"fast path: not compiling {name}: its predictor may take about {need:.0f} MB and {room:.0f} MB "
                f"are available; running the {'fp32 ' * bf16}dygraph model at this size.",
                stacklevel=3,
            )
            return ref_out
        try:
            ref = as_array(ref_out[0])
            release_freed_memory()
            with tempfile.TemporaryDirectory(prefix="segmenter_fast_") as tmp:
                prefix = deploy.export(
                    self.model,
                    os.path.join(tmp, "model"),
                    key[1:],
                    batch_size=None,
                    fused_attention=True,
                    precision=self.precision,
                )
                release_freed_memory()
                # the predictor reads the files: they may go once it exists. A predictor off from the dygraph model
                # makes way for the next: bf16 (oneDNN only: MKL has no bf16), oneDNN in fp32, MKL
                tries = ([(None, "bf16"), (True, "fp32")] if bf16 else [(None, "fp32")]) + [(False, "fp32")]
                for i, (use_onednn, precision) in enumerate(tries):
                    pred = deploy.create_predictor(prefix, self.num_threads, use_onednn, precision)
                    out = first_run(pred, x)
                    pred.release()
                    diff = max_abs_diff(as_array(out[0]), ref)
                    tol = BF16_CHECK_TOL if pred.precision == "bf16" else CHECK_TOL
                    if diff <= tol * (1.0 + max_abs(ref)):
                        self.predictors[key] = pred
                        # in bf16 the call that compiles answers in bf16 too: a single image is one call
                        return out if pred.precision == "bf16" else ref_out
                    after = tries[i + 1] if i + 1 < len(tries) else None
                    then = (
                        f"trying {'oneDNN' if after[0] is not False else 'MKL'}{' in fp32' * bf16}"
                        if after
                        else f"running the {'fp32 ' * bf16}dygraph model"
                    )
                    warnings.warn(
                        f"fast path: the {'oneDNN' if pred.use_onednn else 'MKL'}{f' {pred.precision}' * bf16} "
                        f"predictor of {name} is off by max|diff| {diff:.2e} from the dygraph model; {then}.",
                        stacklevel=3,
                    )
                    del pred, out
                    release_freed_memory()
            self.failed = f"predictor off by {diff:.2e}"
        except Exception as e:  # noqa: BLE001 (a model paddle cannot trace still runs, in dygraph)
            self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200] if str(e).strip() else ''}"
            warnings.warn(
                f"fast path: paddle could not export {name} ({self.failed}); running the {'fp32 ' * bf16}dygraph "
                f"model (set test_config.fast_path: false to skip the attempt).",
                stacklevel=3,
            )
        return ref_out


def first_run(pred, x: paddle.Tensor) -> List[paddle.Tensor]:
    """The outputs of a new predictor's first run on x, as the predictor's own tensors: no copy to numpy beside the
    reference (157 MB for ViT-S at 512). Where oneDNN rejects the graph at that run, Predictor.__call__ falls back to
    MKL and runs again."""
    try:
        return pred.run_tensors(x)
    except Exception:  # noqa: BLE001 (the oneDNN executor's rejection; __call__ handles it)
        return [as_tensor(o) for o in pred(x.numpy())]


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


def inference_model(model: nn.Layer, fast_path: Optional[bool] = None, precision: str = "fp32"):
    """`model` wrapped in a CompiledModel unless the fast path is off (see fast_path_enabled), else `model` itself.
    precision "bf16" needs the fast path (bf16 is the predictor's) on a CPU with bf16 arithmetic: anything else is a
    ValueError saying so. The model must already be in eval mode."""
    if precision == "fp32":
        return CompiledModel(model) if fast_path_enabled(fast_path) else model
    check_precision(precision)
    if paddle.get_device() != "cpu":
        raise ValueError(
            f"precision {precision}: bf16 inference runs through oneDNN's CPU predictor, and paddle runs on "
            f"{paddle.get_device()}; use --device cpu, or fp32 (docs/deployment.md, GPU)."
        )
    if not fast_path_enabled(fast_path):
        off = "SEGMENTER_FAST_PATH=0" if fast_path is None else "--no_fast_path (test_config.fast_path: false)"
        raise ValueError(
            f"precision {precision} runs through the compiled path, which {off} turns off: drop one of the two."
        )
    return CompiledModel(model, precision=precision)

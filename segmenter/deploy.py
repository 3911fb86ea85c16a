"""Deployment path: export a Segmenter for one fixed input size and run it through `paddle.inference`.

A fixed size keeps the exported graph free of the run-time position-embedding resampling (bicubic
interpolation of a data-dependent size), so the inference passes can fuse the whole network.
"""

import contextlib
import json
import os
import warnings
from typing import Iterator, List, Optional, Sequence

import numpy as np
import paddle
import paddle.inference as paddle_infer
import paddle.nn as nn

from segmenter.models import layers
from segmenter.quiet import quiet_bf16, quiet_export
from segmenter.runtime import PRECISIONS, check_precision, default_threads


def export(
    model: nn.Layer,
    path_prefix: str,
    input_size: Sequence[int],
    batch_size: Optional[int] = 1,
    fused_attention: bool = False,
    precision: str = "fp32",
) -> str:
    """Trace `model` (returning `[logits]`) for inputs [batch_size, C, H, W] and save it with `paddle.jit.save`.

    Args:
        model: a Segmenter (or any layer taking [B, C, H, W] and returning a list of tensors).
        path_prefix: output prefix; files `<prefix>.json`/`.pdmodel` and `<prefix>.pdiparams` are written.
        input_size: (H, W) of the exported input.
        batch_size: fixed batch, or None for a variable batch (sliding windows in batches).
        fused_attention: trace attention as paddle's fused CPU kernel (`self_dp_attention`, AVX-512 only, no GPU
            kernel) where this CPU has it, for a predictor on this machine (engine/compiled.py); False (default)
            traces the explicit product, which runs on any device.
        precision: the precision `create_predictor` runs the export at unless told otherwise, recorded in
            `<prefix>.deploy.json`: "fp32" (default) or "bf16", which traces attention as transposed_attention
            (models/layers.py: all of it in oneDNN's bf16 kernels; portable, and it takes the place of the fused
            kernel). The weights stay fp32 in the file: oneDNN converts them when the predictor is built.
    Returns the prefix.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"export: precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
    if len(input_size) != 2:
        raise ValueError(f"export: input_size must be (H, W); got {list(input_size)}.")
    in_channels = model.backbone.in_channels if hasattr(model, "backbone") else 3
    spec = paddle.static.InputSpec(
        [batch_size, in_channels, int(input_size[0]), int(input_size[1])], dtype="float32", name="x"
    )
    was_training = model.training
    StaticFunction = paddle.jit.dy2static.program_translator.StaticFunction
    prev_forward = model.__dict__.get("forward")  # a StaticFunction under to_static training, else None
    if isinstance(prev_forward, StaticFunction):
        prev_forward.rollback()  # trace the dygraph forward, not the training graph
    model.eval()
    os.makedirs(os.path.dirname(os.path.abspath(path_prefix)), exist_ok=True)
    try:
        # quiet_export: paddle's known chatter (segmenter/quiet.py)
        with fixed_pos_embed(model, input_size), layers.fused_attention(fused_attention), quiet_export():
            with layers.bf16_graph(precision == "bf16"):
                static_model = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)
                paddle.jit.save(static_model, path_prefix)
        with open(path_prefix + DEPLOY_INFO, "w") as f:
            json.dump({"precision": precision, "input": spec.shape}, f)
    finally:
        # to_static converts the layer in place; give the caller back the forward it had
        if isinstance(model.forward, StaticFunction):
            model.forward.rollback()
        if prev_forward is None:
            model.__dict__.pop("forward", None)
        else:
            model.forward = prev_forward
        model.train(was_training)
    return path_prefix


@contextlib.contextmanager
def fixed_pos_embed(model: nn.Layer, input_size: Sequence[int]) -> Iterator[None]:
    """Within it, each SegmenterViT of `model` holds its position embedding already resampled to the patch grid of
    `input_size`, so a graph traced at that size adds a constant instead of resampling: no interpolation in the
    graph, which paddle 3.3.1's oneDNN executor rejects. The values are those the forward would compute (the same
    resample_pos_embed call); the original parameter comes back on exit."""
    from segmenter.models.pos_embed import resample_pos_embed
    from segmenter.models.vit import SegmenterViT

    saved = []
    try:
        for vit in (m for m in model.sublayers(include_self=True) if isinstance(m, SegmenterViT)):
            p, h, w = vit.stride, int(input_size[0]), int(input_size[1])  # pixels per token (a hybrid's: 16)
            # the grid of the forward's tokens after pad_to_patch / crop_to_patch (not h // patch_size: a hybrid's
            # patch_size is 1 on its stem's map, and that grid of 512x512 resampled a 262144-token embedding)
            grid = (-(-h // p), -(-w // p)) if vit.patch_remainder == "pad" else (h // p, w // p)
            if grid == tuple(vit.grid_size):
                continue
            with paddle.no_grad():
                pe = resample_pos_embed(vit.pos_embed, vit.grid_size, grid, vit.num_prefix_tokens, vit.pos_embed_interp)
            saved.append((vit, vit.pos_embed, vit.grid_size))
            vit.pos_embed = vit.create_parameter(
                pe.shape, dtype=pe.dtype, default_initializer=nn.initializer.Assign(pe)
            )
            vit.grid_size = grid
        yield
    finally:
        for vit, pe, grid in reversed(saved):
            vit.pos_embed, vit.grid_size = pe, grid


def _model_file(path_prefix: str) -> str:
    """Paddle 3 writes `<prefix>.json` (PIR) and older versions `<prefix>.pdmodel`; return the one present."""
    for ext in (".json", ".pdmodel"):
        if os.path.exists(path_prefix + ext):
            return path_prefix + ext
    raise FileNotFoundError(
        f"No exported model at {path_prefix}.json or {path_prefix}.pdmodel; "
        f"run tools/export.py --save {path_prefix} first."
    )


def exported_files(path_prefix: str) -> List[str]:
    """The files `export()` wrote for path_prefix: the program (`.json`; `.pdmodel` from paddle 2) and the weights
    (`.pdiparams`, with `.pdiparams.info` where paddle writes one)."""
    return [
        path_prefix + ext
        for ext in (".json", ".pdmodel", ".pdiparams", ".pdiparams.info", DEPLOY_INFO)
        if os.path.isfile(path_prefix + ext)
    ]


# Beside an export `<save>.json` / `.pdiparams` (or `<save>` = a .onnx file): the `model` config section it was built
# from. It was `<save>.model.json` before, which read as a second program beside `model.json`; read_model_card still
# reads that name.
MODEL_CARD_SUFFIX = ".model_card.json"
OLD_MODEL_CARD_SUFFIX = ".model.json"


def write_model_card(save: str, model: dict) -> str:
    """Write `<save>.model_card.json` ({"model": the resolved model section}) whole or not at all; returns its path."""
    import json

    path = save + MODEL_CARD_SUFFIX
    with open(path + ".partial", "w") as f:
        json.dump({"model": model}, f, indent=1, default=str)
    os.replace(path + ".partial", path)
    return path


def read_model_card(save: str) -> dict:
    """The `model` section an export at `save` (its --save: a prefix, or the .onnx file) was built from: its
    `<save>.model_card.json`, or the `<save>.model.json` of an export made before that name."""
    import json

    for path in (save + MODEL_CARD_SUFFIX, save + OLD_MODEL_CARD_SUFFIX):
        if os.path.isfile(path):
            with open(path) as f:
                return (json.load(f) or {}).get("model") or {}
    raise FileNotFoundError(
        f"no model card beside the export {save}: neither {save + MODEL_CARD_SUFFIX} nor (an older export's) "
        f"{save + OLD_MODEL_CARD_SUFFIX}; export it again with tools/export.py --save {save}."
    )


DEPLOY_INFO = ".deploy.json"  # beside <prefix>.json: {"precision": ..., "input": [B, C, H, W]} of the export


def recorded_precision(path_prefix: str) -> str:
    """The precision `export` recorded for this export ("fp32" for an export without the record)."""
    try:
        with open(path_prefix + DEPLOY_INFO) as f:
            return str(json.load(f).get("precision", "fp32"))
    except FileNotFoundError:
        return "fp32"


ONEDNN_CACHE = 4  # input shapes whose oneDNN primitives a predictor caches (paddle's default 0: no bound)
# Paddle 3.3.1's matmul_elementwise_add_fuse_pass folds an add into the matmul before it; where the add's other
# input is a conv output in oneDNN's channels-last layout, oneDNN runs that matmul on its reference kernel: UPerNet's
# top-down FPN sums (resize + lateral) took its ViT-B at 256x256 from 1.5 s to 4.5 s (MKL: 1.8 s), and past 27 s at
# 512. Without the pass ViT-S linear and mask at 512 give the same logits, bitwise, in 1.00x and 0.99x the time.
ONEDNN_DELETED_PASSES = ("matmul_elementwise_add_fuse_pass",)


def predictor_config(
    path_prefix: str, num_threads: Optional[int], use_onednn: bool, precision: str = "fp32"
) -> "paddle_infer.Config":
    """The CPU inference config of an export of `export()`: `num_threads` math threads (default: all cores), oneDNN
    (with its shape cache bounded and ONEDNN_DELETED_PASSES deleted) or MKL, the inference passes on; with precision
    "bf16", oneDNN's bf16 passes: every op with a oneDNN bf16 kernel (matmul, fc, conv, softmax, layer_norm, gelu,
    transpose...) computes in bf16 with fp32 accumulation, the graph's input and output stay fp32."""
    if precision == "bf16" and not use_onednn:
        raise ValueError(f"predictor of {path_prefix}: bf16 runs through oneDNN only; MKL (use_onednn=False) is fp32.")
    config = paddle_infer.Config(_model_file(path_prefix), path_prefix + ".pdiparams")
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(default_threads() if num_threads is None else int(num_threads))
    if use_onednn:
        config.enable_onednn()
        config.set_onednn_cache_capacity(ONEDNN_CACHE)  # a slide batch and its remainder: 2 shapes
        for name in ONEDNN_DELETED_PASSES:
            config.delete_pass(name)
        if precision == "bf16":
            with quiet_bf16():
                config.enable_onednn_bfloat16()
    else:
        config.disable_onednn()
    config.switch_ir_optim(True)
    return config


def error_line(error: Exception) -> str:
    """The line of a paddle error that names it (`NotFoundError: The kernel ...`), else its last line."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()] or [type(error).__name__]
    return next((ln for ln in lines if "Error:" in ln), lines[-1])[:200]


class Predictor:
    """A `paddle.inference` predictor with a numpy in, numpy out `__call__`.

    use_onednn: True or False force it; None (default) uses oneDNN and falls back to MKL (with a warning) if
    paddle rejects the graph when loading it or at the first run: paddle 3.3.1's PIR oneDNN executor
    fails on graphs with an interpolation (logits grids above 128 take paddle's bilinear kernel; `export` bakes a
    resampled position embedding in as a constant). Where it runs, oneDNN was 15-20% faster than MKL on the
    2-core AMD machine and within the parity bounds of the eager model (docs/benchmarks/history.md).
    precision: "fp32", "bf16" (oneDNN only, on a CPU with bf16 arithmetic: runtime.check_precision), or None
    (default): the precision `export` recorded. A bf16 graph paddle rejects falls back to oneDNN in fp32 (UPerNet's
    pyramid pooling: pool2d has no bf16 kernel for its adaptive sizes), then to MKL as above; `self.precision` and
    `self.use_onednn` say what runs.
    """

    def __init__(
        self,
        path_prefix: str,
        num_threads: Optional[int] = None,
        use_onednn: Optional[bool] = None,
        precision: Optional[str] = None,
    ):
        _model_file(path_prefix)  # a missing export is named before its record is read
        self.path_prefix, self.num_threads = path_prefix, num_threads
        recorded = precision is None
        precision = recorded_precision(path_prefix) if recorded else precision
        what = f"predictor of {path_prefix}: precision" + (f" (recorded in {path_prefix}{DEPLOY_INFO})" * recorded)
        check_precision(precision, what)
        if precision == "bf16" and use_onednn is False:
            raise ValueError(f"{what} bf16 runs through oneDNN only; use_onednn=False (MKL) runs fp32.")
        # what to try, in turn, until paddle accepts the graph at its first run: (use_onednn, precision)
        self._steps = [(use_onednn is not False, precision)]
        self._steps += [(True, "fp32")] if precision == "bf16" else []
        self._steps += [(False, "fp32")] if use_onednn is None else []
        try:
            self._load(*self._steps[0])
        except Exception as e:  # noqa: BLE001 (any rejection by the oneDNN executor means: the next step)
            self._fall_back(e)

    def _fall_back(self, error: Exception) -> None:
        """Load the next step, saying why; with none left, raise the error."""
        while True:
            if len(self._steps) < 2:
                raise error
            rejected = self._steps.pop(0)
            use_onednn, precision = self._steps[0]
            warnings.warn(
                f"deploy: paddle's oneDNN executor rejected {self.path_prefix}"
                f"{' in bf16' if rejected[1] == 'bf16' else ''} ({error_line(error)}); "
                f"running with {'oneDNN' if use_onednn else 'MKL'}{' in fp32' * (rejected[1] != precision)} instead.",
                stacklevel=4,
            )
            try:
                return self._load(use_onednn, precision)
            except Exception as e:  # noqa: BLE001
                error = e

    def _load(self, use_onednn: bool, precision: str) -> None:
        config = predictor_config(self.path_prefix, self.num_threads, use_onednn, precision)
        config.disable_glog_info()
        self.use_onednn, self.precision = use_onednn, precision
        self.predictor = paddle_infer.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.outputs = [self.predictor.get_output_handle(n) for n in self.predictor.get_output_names()]

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        """x float32 [B, C, H, W] -> [logits [B, n_cls, H, W]] as numpy arrays."""
        while len(self._steps) > 1:  # the oneDNN executor can also reject the graph at its first run
            try:
                out = self._run(x)
                self._steps = self._steps[:1]
                return out
            except Exception as e:  # noqa: BLE001
                self._fall_back(e)
        return self._run(x)

    def run_tensors(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        """As __call__ on a float32 CPU tensor [B, C, H, W], returning paddle tensors the predictor made (no copies
        through numpy: 4% of a ViT-S forward at 512, its 157 MB of logits copied out and wrapped back). Run
        __call__ once first where oneDNN may still fall back to MKL."""
        return self.predictor.run([x.contiguous() if hasattr(x, "contiguous") else x])

    def release(self) -> None:
        """Free the activations the predictor holds between runs (its intermediate tensors and the free chunks of
        its memory pool) to the process's heap, where other predictors and the dygraph model can reuse them. The
        next run allocates them again: no measurable cost (ViT-S at 512, 8 interleaved runs: 0.95x the median
        without release)."""
        self.predictor.clear_intermediate_tensor()
        self.predictor.try_shrink_memory()

    def _run(self, x: np.ndarray) -> List[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(x)
        self.predictor.run()
        return [o.copy_to_cpu() for o in self.outputs]


def create_predictor(
    path_prefix: str,
    num_threads: Optional[int] = None,
    use_onednn: Optional[bool] = None,
    precision: Optional[str] = None,
) -> Predictor:
    """Load an export of `export()` for CPU inference with `num_threads` (default: all cores); oneDNN where
    paddle accepts the graph, else MKL; at `precision` (default: the one the export recorded; see `Predictor`)."""
    return Predictor(path_prefix, num_threads, use_onednn, precision)


ONNX_OPSET = 17


def export_onnx(
    model: nn.Layer, path: str, input_size: Sequence[int], batch_size: Optional[int] = None, opset: int = ONNX_OPSET
) -> str:
    """Export `model` to ONNX through `export()` and paddle2onnx: input "x" [batch, C, H, W] with H, W fixed and
    the batch dynamic when batch_size is None; output the logits [batch, n_cls, H, W]. Returns `path`.

    H and W are fixed because the model's shape logic (padding to the patch, position-embedding resampling,
    the bilinear matrices of the logits upsampling) runs in Python on concrete sizes; paddle.jit.to_static rejects
    it with unknown H and W. Export once per size (a slide window's size covers any image).
    """
    try:
        import paddle2onnx
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "export_onnx needs paddle2onnx: pip install 'paddle2onnx==2.1.0' "
            "'onnx==1.17.0' 'numpy<2' (see requirements.txt)."
        ) from e
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        prefix = export(model, os.path.join(tmp, "model"), input_size, batch_size)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # optimize_tool "None": the default "polygraphy" makes paddle2onnx set POLYGRAPHY_AUTOINSTALL_DEPS=1, and
        # polygraphy then pip-installs onnx_graphsurgeon at run time, whose ml-dtypes upgraded numpy to 2.x here
        # and broke paddleseg's opencv; "onnxoptimizer" fails in 2.1.0 on its own pass list ("eliminate_nop_cast ").
        with quiet_export():
            paddle2onnx.export(
                _model_file(prefix),
                prefix + ".pdiparams",
                path,
                opset_version=opset,
                enable_onnx_checker=True,
                optimize_tool="None",
            )
    zero_pad_values(path)
    return path


def zero_pad_values(path: str) -> int:
    """Set the padding value of every constant-mode Pad in the ONNX file to 0; returns how many were set.

    paddle2onnx 2.1.0 writes the value of `F.pad(..., value=0.0)` from uninitialised memory: converting one
    export six times gave 0.0 twice and values like 4e30 otherwise (logits off by up to 0.6 at 48x40).
    The model's only Pad is pad_to_patch's zero padding, so 0 is the value by construction.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    g = model.graph
    pads = [
        n
        for n in g.node
        if n.op_type == "Pad"
        and len(n.input) > 2
        and n.input[2]
        and all(a.name != "mode" or a.s in (b"", b"constant") for a in n.attribute)
    ]
    if not pads:
        return 0
    name = "segmenter.pad_zero"
    if all(t.name != name for t in g.initializer):
        g.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), name))
    for n in pads:
        n.input[2] = name
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return len(pads)


def create_onnx_session(path: str, num_threads: Optional[int] = None):
    """An onnxruntime CPU session for an ONNX export; run it with `session.run(None, {"x": x})[0]`."""
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No ONNX model at {path}; run tools/export.py --format onnx --save {path} first.")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = default_threads() if num_threads is None else int(num_threads)
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])

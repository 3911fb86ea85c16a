"""Known third-party chatter, silenced where it comes from and nowhere else: each rule names the exact line.

- `No ccache found ...`: a UserWarning paddle's cpp_extension gives at `import paddle` (it only matters to people
  compiling custom C++ ops); filtered by `silence_import_warnings()`, which `segmenter/__init__.py` calls first.
  The same filters take two notes paddle gives on every run of a kind, about its own behaviour: `When training, we
  now always track global mean and variance.` (paddle/nn/layer/norm.py, each BatchNorm forward in training: the
  UPerNet heads) and `Tensor do not have 'place' interface for pir graph mode` (paddle/pir/math_op_patch.py, from
  paddle's own backward construction when `to_static_training: True`).
- dy2static's `Find variable `attns` defined in global scope` (paddle/jit/dy2static/transformers/utils.py) about
  the attention-map list of our forward, which no traced graph asks for (an export, `to_static_training`): one more
  filter of `silence_import_warnings()`.
- `Paddle static graph(PIR) not support input out tensor for now!!!!!`: a glog line paddle's C++ (eager_utils.cc)
  writes to stderr whenever `F.softmax` is traced (paddle passes its own `out=None`), i.e. on every export.
  `quiet_export()` drops these lines while the model is traced.
- paddle2onnx's progress lines (`[Paddle2ONNX] ...`, `ONNX model saved in ...`): dropped by `quiet_export()` too;
  tools/export.py says itself what it wrote.
- `Hardware support for BFLOAT16 is enabled`: a glog line paddle's analysis_config.cc writes to stderr at every
  `enable_onednn_bfloat16()` (`disable_glog_info()` does not cover it); `quiet_bf16()` drops it.
Any other line is passed through unchanged.
"""

import contextlib
import os
import re
import sys
import tempfile
import warnings

IMPORT_WARNINGS = (  # (message, module) regexes
    (r"No ccache found", r"paddle\.utils\.cpp_extension"),
    (r"When training, we now always track global mean and variance", r"paddle\.nn\.layer\.norm"),
    (r"Tensor do not have 'place' interface for pir graph mode", r"paddle\.pir\.math_op_patch"),
    (r"Find variable `attns` defined in global scope", r"paddle\.jit\.dy2static"),
)
EXPORT_LINES = re.compile(
    r"Paddle static graph\(PIR\) not support input out tensor for now!+$"
    r"|^\[Paddle2ONNX\] "
    r"|\[INFO\]\s+ONNX model saved in "
)


def silence_import_warnings() -> None:
    """Filter the warnings paddle gives (at import, and its notes on every run) that concern no user of this
    package."""
    for message, module in IMPORT_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)


@contextlib.contextmanager
def filtered_fd(fd: int, drop: re.Pattern):
    """Capture what C/C++ code and Python write to file descriptor fd; on exit write it back without the lines
    that match drop."""
    stream = {1: sys.stdout, 2: sys.stderr}[fd]
    stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [
                ln
                for ln in tmp.read().decode(errors="replace").splitlines(keepends=True)
                if not drop.search(ln.rstrip("\n"))
            ]
            if kept:
                stream.write("".join(kept))
                stream.flush()


@contextlib.contextmanager
def quiet_export():
    """Run a paddle.jit / paddle2onnx export without the lines listed in this module's docstring."""
    with filtered_fd(1, EXPORT_LINES), filtered_fd(2, EXPORT_LINES):
        yield


BF16_LINES = re.compile(r"analysis_config\.cc:\d+\] Hardware support for BFLOAT16 is enabled$")


def quiet_bf16():
    """Around `paddle.inference.Config.enable_onednn_bfloat16()`: without its glog line (this module's docstring)."""
    return filtered_fd(2, BF16_LINES)

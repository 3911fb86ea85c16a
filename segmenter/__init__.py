"""Segmenter as a PaddleSeg plugin: importing this package registers every component with PaddleSeg's managers.

With Paddle and PaddleSeg installed (the normal case) the Paddle models are imported, which registers them, and
Paddle's CPU runtime is tuned (threads, MKL's AVX2 path on AMD; see segmenter/runtime.py).
A PyTorch-only install can still use `segmenter.pytorch` and `segmenter.convert`, which never import Paddle.
Either way glibc's malloc is told to keep freed memory for reuse (runtime.configure_malloc).
"""

from segmenter import quiet, runtime

quiet.silence_import_warnings()  # before Paddle is imported: its `No ccache found` warning (see segmenter/quiet.py)

if runtime.tuning_enabled():
    runtime.configure_malloc()  # before the first large tensor: it spares ~30% of a forward in page faults

try:
    # importing registers SegmenterShapes (datasets), SegmenterCrossEntropyLoss (engine), SegmenterViT, Segmenter
    from segmenter import datasets, engine, models  # noqa: F401
except ModuleNotFoundError as e:  # only a missing Paddle/PaddleSeg is tolerated; any other failure surfaces
    if (e.name or "").split(".")[0] not in ("paddle", "paddleseg"):
        raise
else:
    runtime.configure_at_import()  # before any matmul runs: MKL reads its settings at the first call

__version__ = "0.1.0"

from segmenter.inference import Inferencer  # noqa: E402,F401  (the Paddle model is built on first use)

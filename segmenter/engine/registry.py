"""register(): import the Paddle components, which registers them with PaddleSeg's managers, and tune Paddle's CPU
runtime. `import segmenter` calls it, unless a front door parses its arguments first (segmenter/__init__.py); then
the tool's `run_cli` calls it after parsing. This module itself imports neither Paddle nor PaddleSeg."""

from segmenter import runtime

_DONE = []  # [True] once register() ran


def register() -> None:
    """Import the components (each registers itself with PaddleSeg's managers) and tune Paddle's CPU runtime; once.
    A missing Paddle or PaddleSeg is tolerated (a PyTorch-only install); any other failure surfaces."""
    if _DONE:
        return
    _DONE.append(True)
    try:
        # SegmenterShapes and the dataset classes (datasets), SegmenterCrossEntropyLoss (engine.losses), SegmenterViT,
        # Segmenter, UPerNet (models)
        from segmenter import datasets, models  # noqa: F401
        from segmenter.engine import losses  # noqa: F401
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("paddle", "paddleseg"):
            raise
    else:
        runtime.configure_at_import()  # before any matmul runs: MKL reads its settings at the first call

"""Segmenter as a PaddleSeg plugin: importing this package registers every component with PaddleSeg's managers.

With Paddle and PaddleSeg installed (the normal case) the Paddle models are imported, which registers them, and
Paddle's CPU runtime is tuned (threads, MKL's AVX2 path on AMD; see segmenter/runtime.py).
A PyTorch-only install can still use `segmenter.pytorch` and `segmenter.convert`, which never import Paddle.
Either way glibc's malloc is told to keep freed memory for reuse (runtime.configure_malloc).

The front doors (tools/*.py) parse their arguments before Paddle loads, so `--help` and a mistyped option answer
at once instead of after 5-15 s of imports: a tool sets `SEGMENTER_PARSE_FIRST = True` in its own module before
it imports anything of ours; `import segmenter` then leaves the registration to `register()`
(segmenter/engine/registry.py), which the tool's `run_cli` calls once the arguments are parsed. The option modules
the tools parse with (`segmenter.engine.{cli,tool_args,cli_errors,config_check}`) import neither Paddle nor torch.
Any other importer (a script, a notebook, pytest, PaddleSeg's own tools) is registered at `import segmenter`.
"""

import sys

from segmenter import quiet, runtime
from segmenter.engine.registry import register

quiet.silence_import_warnings()  # before Paddle is imported: its `No ccache found` warning (see segmenter/quiet.py)

if runtime.tuning_enabled():
    runtime.configure_malloc()  # before the first large tensor: it spares ~30% of a forward in page faults

__version__ = "0.1.0"


def _front_door_parses_first() -> bool:
    """True where the running script is a front door that calls register() after parsing its arguments."""
    return getattr(sys.modules.get("__main__"), "SEGMENTER_PARSE_FIRST", False) is True


if not _front_door_parses_first():
    register()

from segmenter.inference import Inferencer  # noqa: E402,F401  (the Paddle model is built on first use)

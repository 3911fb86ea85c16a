"""What the tools do with an error a user caused: one message naming the culprit, a non-zero exit, no traceback.

Bugs (any other exception) keep their traceback.
"""

import pickle
import shlex
import sys
from typing import Callable, List, Optional

from segmenter.engine.registry import register
from segmenter.engine.stops import SaveDirBusy, TrainingStopped

# FileNotFoundError and other OSErrors (a full disk), ValueError (config, weights and checkpoint mismatches,
# bad data), UnpicklingError (a file that would run code), FloatingPointError (a NaN loss).
USER_ERRORS = (OSError, ValueError, pickle.UnpicklingError, FloatingPointError, SaveDirBusy)


def resume_command(argv: List[str], checkpoint: str) -> str:
    """The command line that continues a run: argv with --resume_model replaced by checkpoint."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--resume_model":
            skip = True
            continue
        if a.startswith("--resume_model="):
            continue
        out.append(a)
    return "python " + " ".join(shlex.quote(a) for a in out + ["--resume_model", checkpoint])


def run_cli(main: Callable, args, argv: Optional[List[str]] = None) -> int:
    """main(args); a user error prints 'error: ...' on stderr and returns 1; a signal stop returns 128 + signum.
    An int main returns is the exit status. The arguments are parsed by now: the components are registered and
    Paddle's runtime tuned here, where a front door deferred it to answer `--help` at once (segmenter/__init__.py)."""
    register()
    try:
        status = main(args)
    except TrainingStopped as e:
        print(f"{e}\nresume: {resume_command(argv or sys.argv, e.checkpoint)}", file=sys.stderr, flush=True)
        return 128 + e.signum
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except RuntimeError as e:  # PaddleSeg's builder wraps a component's error: report the user error inside
        inner = user_error_inside(e)
        if inner is None:
            raise
        print(f"error: {inner}", file=sys.stderr, flush=True)
        return 1
    return status if isinstance(status, int) else 0


def user_error_inside(e: BaseException) -> Optional[BaseException]:
    """The first user error in e's chain of causes, if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, USER_ERRORS):
            return e
        e = e.__cause__ or e.__context__
    return None
